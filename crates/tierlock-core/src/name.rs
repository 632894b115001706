//! Lock names: validation and the cheap-to-clone name type handed to providers.

use std::borrow::Borrow;
use std::fmt;

use smol_str::SmolStr;

use crate::error::{InvalidNameReason, LockError};

/// The longest lock name accepted, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 1024;

/// A validated lock name: non-empty, at most [`MAX_NAME_LEN`] bytes of UTF-8, compared
/// case-sensitively.
///
/// Providers receive a `&LockName` and map it to their own keys (a file name, a 64-bit advisory
/// key, a resource string); that mapping belongs to the provider. Cloning is cheap: short names
/// are stored inline and long ones are reference-counted.
///
/// ```
/// use tierlock_core::LockName;
///
/// let name = LockName::new("tenant:42:migrate")?;
/// assert_eq!(name.as_str(), "tenant:42:migrate");
/// assert!(LockName::new("").is_err());
/// # Ok::<(), tierlock_core::LockError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockName(SmolStr);

impl LockName {
    /// Validates `name` and makes a `LockName` of it.
    ///
    /// # Errors
    ///
    /// [`LockError::InvalidName`] if the name is empty or longer than [`MAX_NAME_LEN`] bytes.
    pub fn new(name: &str) -> Result<Self, LockError> {
        validate(name)?;
        Ok(LockName(SmolStr::new(name)))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_key(key: SmolStr) -> Self {
        LockName(key)
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for LockName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for LockName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

/// Checks the rules every lock name must follow.
#[inline]
pub(crate) fn validate(name: &str) -> Result<(), LockError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(name));
    }
    Ok(())
}

/// The error for a name [`validate`] refused: out of line, so that every acquisition inlines
/// only the two comparisons.
#[cold]
#[inline(never)]
fn invalid(name: &str) -> LockError {
    let reason = if name.is_empty() {
        InvalidNameReason::Empty
    } else {
        InvalidNameReason::TooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        }
    };
    LockError::InvalidName {
        name: name.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(LockName::new("a").is_ok());
        assert!(LockName::new(&"x".repeat(MAX_NAME_LEN)).is_ok());
        // 1024 bytes made of 2-byte characters.
        assert!(LockName::new(&"é".repeat(MAX_NAME_LEN / 2)).is_ok());
        assert!(matches!(
            LockName::new(""),
            Err(LockError::InvalidName {
                reason: InvalidNameReason::Empty,
                ..
            })
        ));
        assert!(matches!(
            LockName::new(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(LockError::InvalidName {
                reason: InvalidNameReason::TooLong {
                    len: 1025,
                    max: 1024
                },
                ..
            })
        ));
        assert_ne!(LockName::new("Name").ok(), LockName::new("name").ok());
    }
}
