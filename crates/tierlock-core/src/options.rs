//! The rules every provider builder applies to its options, written once so that they mean the
//! same everywhere (see "Writing a provider" in [`provider`](crate::provider)).
//!
//! * A duration that can be switched off is an `Option<Duration>`: `None` is off. Zero is never
//!   a sentinel for "off" (a computed interval that happens to be zero must not silently switch
//!   a feature off): [`nonzero`] rejects it.
//! * A table name that is put into SQL (a fencing counter table, say) is a plain name,
//!   optionally schema-qualified: [`sql_table_name`].
//!
//! A builder's `build()` runs the checks and maps an [`OptionError`] to its own error type,
//! keeping the option's name.
//!
//! ```
//! use std::time::Duration;
//! use tierlock_core::options::{nonzero, sql_table_name};
//!
//! assert!(nonzero("request_poll_interval", None).is_ok()); // off
//! assert!(nonzero("request_poll_interval", Some(Duration::from_millis(50))).is_ok());
//! let err = nonzero("request_poll_interval", Some(Duration::ZERO)).unwrap_err();
//! assert_eq!(err.option, "request_poll_interval");
//!
//! assert!(sql_table_name("fencing_table", "locks.fence", 63).is_ok());
//! assert!(sql_table_name("fencing_table", "fence; DROP TABLE x", 63).is_err());
//! ```

use std::time::Duration;

/// An option value a builder refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid option {option}: {reason}")]
pub struct OptionError {
    /// The option's name, as the builder method spells it.
    pub option: &'static str,
    /// What is wrong with the value.
    pub reason: &'static str,
}

/// Accepts `None` (off) and any duration but zero.
///
/// # Errors
///
/// `Some(Duration::ZERO)`.
pub fn nonzero(option: &'static str, value: Option<Duration>) -> Result<(), OptionError> {
    match value {
        Some(duration) if duration.is_zero() => Err(OptionError {
            option,
            reason: "must be greater than zero (use None to switch it off)",
        }),
        _ => Ok(()),
    }
}

/// Accepts `table` or `schema.table`, each part ASCII letters, digits and `_`, not starting
/// with a digit, at most `max_part` bytes: a name that can be put into SQL as written, since
/// nothing in it can change the statement.
///
/// # Errors
///
/// Anything else (quotes, spaces, `;`, three parts, empty parts, …).
pub fn sql_table_name(
    option: &'static str,
    name: &str,
    max_part: usize,
) -> Result<(), OptionError> {
    let plain = |part: &str| {
        !part.is_empty()
            && part.len() <= max_part
            && !part.starts_with(|c: char| c.is_ascii_digit())
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let parts = name.split('.').count();
    if parts <= 2 && name.split('.').all(plain) {
        Ok(())
    } else {
        Err(OptionError {
            option,
            reason: "must be `table` or `schema.table`: ASCII letters, digits and `_`",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain() {
        for bad in [
            "",
            "a;drop table x",
            "a.b.c",
            "\"quoted\"",
            "[dbo].[t]",
            "sch.",
            ".t",
            "1abc",
            "ta ble",
        ] {
            assert!(sql_table_name("t", bad, 63).is_err(), "{bad:?}");
        }
        for good in ["tierlock_fence", "locks.fence_2", "Locks.Fence", "_x"] {
            assert!(sql_table_name("t", good, 63).is_ok(), "{good:?}");
        }
        assert!(sql_table_name("t", &"x".repeat(63), 63).is_ok());
        assert!(sql_table_name("t", &"x".repeat(64), 63).is_err());
    }
}
