//! [`parse_duration`]: the one parser of human durations in the project (`ttl=` in a
//! [`connect`](crate::connect) URL, the CLI's `--timeout` and `--ttl`).

use std::time::Duration;

/// Why a text is not a duration (see [`parse_duration`]). The text is echoed: durations hold no
/// secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Nothing but white space.
    #[error("empty duration")]
    Empty,
    /// A number is not digits with at most one `.` (`1e3`, `-1`, `1.2.3`, `.`, `inf`).
    #[error("{text:?}: {number:?} is not a number (digits with at most one `.`)")]
    NotANumber {
        /// The whole text.
        text: String,
        /// The part that is not a number.
        number: String,
    },
    /// A number without a unit after another part (`1m30`), or a unit without a number (`s`).
    #[error("{text:?}: each number needs a unit (ms, s, m, h), e.g. 1m30s")]
    MissingUnit {
        /// The whole text.
        text: String,
    },
    /// A unit that is not `ms`, `s`, `m` or `h`.
    #[error("{text:?}: unknown unit {unit:?} (use ms, s, m, h)")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// More than [`Duration::MAX`].
    #[error("{text:?}: too long")]
    TooLong {
        /// The whole text.
        text: String,
    },
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a human duration: a number of seconds (`30`, `0.5`), or numbers with units — `ms`,
/// `s` (`sec`, `secs`), `m` (`min`, `mins`), `h` — one after another (`250ms`, `2m`, `1h`,
/// `1m30s`, `1.5h`). A number is ASCII digits with at most one `.`; signs, exponents (`1e3`),
/// `inf` and `nan` are refused. Leading and trailing white space is ignored; fractions finer
/// than a nanosecond are cut off. `0` is zero.
///
/// ```
/// use std::time::Duration;
/// use tierlock::parse_duration;
///
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
/// assert!(parse_duration("1e3").is_err());
/// ```
///
/// # Errors
///
/// A [`DurationError`] saying what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || trimmed.to_owned();
    let not_a_number = |number: &str| DurationError::NotANumber {
        text: owned(),
        number: number.to_owned(),
    };
    let number_end = |s: &str| {
        s.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len())
    };
    // A bare number: seconds.
    if number_end(trimmed) == trimmed.len() {
        let nanos = decimal_nanos(trimmed, NANOS_PER_SEC).ok_or_else(|| not_a_number(trimmed))?;
        return from_nanos(nanos).ok_or_else(|| DurationError::TooLong { text: owned() });
    }
    let mut total: u128 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let (number, tail) = rest.split_at(number_end(rest));
        if number.is_empty() {
            // A unit without a number, or a character that is neither (`-1`, `+5`).
            return match tail.chars().next() {
                Some(c) if c.is_ascii_alphabetic() => {
                    Err(DurationError::MissingUnit { text: owned() })
                }
                _ => Err(not_a_number(tail)),
            };
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "" => return Err(DurationError::MissingUnit { text: owned() }),
            "ms" => NANOS_PER_SEC / 1000,
            "s" | "sec" | "secs" => NANOS_PER_SEC,
            "m" | "min" | "mins" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            other => {
                return Err(DurationError::UnknownUnit {
                    text: owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let part = decimal_nanos(number, scale).ok_or_else(|| not_a_number(number))?;
        total = total.saturating_add(part);
        rest = next;
    }
    from_nanos(total).ok_or_else(|| DurationError::TooLong { text: owned() })
}

/// `number` (digits with at most one `.`, at least one digit) times `scale` nanoseconds, exactly
/// (cut to whole nanoseconds); `None` if it is not such a number. Saturates when huge.
fn decimal_nanos(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let mut nanos: u128 = 0;
    for digit in whole.bytes() {
        nanos = nanos
            .saturating_mul(10)
            .saturating_add(u128::from(digit - b'0'));
    }
    nanos = nanos.saturating_mul(scale);
    // Twenty digits of fraction are finer than a nanosecond of an hour; the rest are ignored
    // (and 10^20 times an hour's nanoseconds fits a u128).
    let mut numerator: u128 = 0;
    let mut denominator: u128 = 1;
    for digit in fraction.bytes().take(20) {
        numerator = numerator * 10 + u128::from(digit - b'0');
        denominator *= 10;
    }
    Some(nanos.saturating_add(numerator * scale / denominator))
}

fn from_nanos(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    // The remainder is below 10^9, which fits a u32.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        let ok = |text: &str, expected: Duration| assert_eq!(parse_duration(text), Ok(expected));
        ok("0", Duration::ZERO);
        ok("30", Duration::from_secs(30));
        ok("0.5", Duration::from_millis(500));
        ok(".5", Duration::from_millis(500));
        ok("5.", Duration::from_secs(5));
        ok("0.1", Duration::from_millis(100));
        ok(" 30s ", Duration::from_secs(30));
        ok("250ms", Duration::from_millis(250));
        ok("1.5ms", Duration::from_micros(1500));
        ok("2m", Duration::from_secs(120));
        ok("2min", Duration::from_secs(120));
        ok("1h", Duration::from_secs(3600));
        ok("1.5h", Duration::from_secs(5400));
        ok("1m30s", Duration::from_secs(90));
        ok("1h1m1s1ms", Duration::from_millis(3_661_001));
        ok("0.000000001", Duration::from_nanos(1));
        ok("0.0000000019", Duration::from_nanos(1));
    }

    #[test]
    fn only_digits_and_one_dot() {
        for text in [
            "1e3", "1E3", "1e3s", "-1", "+5", "inf", "nan", "NaN", "infinity", "1.2.3", "1.2.3s",
            ".", ".s", "0x10", "1_000", "١",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
        assert!(matches!(
            parse_duration("1e3"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("-1"),
            Err(DurationError::NotANumber { .. })
        ));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(parse_duration("  "), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1m30"),
            Err(DurationError::MissingUnit { .. })
        ));
        let err = parse_duration("5x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"5x\": unknown unit \"x\" (use ms, s, m, h)"
        );
        let err = parse_duration("1.2.3s").unwrap_err();
        assert!(
            err.to_string().contains("\"1.2.3\" is not a number"),
            "{err}"
        );
    }

    #[test]
    fn huge_values_are_refused_not_wrapped() {
        let max_secs = u64::MAX.to_string();
        assert_eq!(parse_duration(&max_secs), Ok(Duration::from_secs(u64::MAX)));
        for text in [
            format!("{max_secs}0"),
            format!("{max_secs}h"),
            "9".repeat(60),
            format!("{}s1s", u64::MAX),
        ] {
            assert!(
                matches!(parse_duration(&text), Err(DurationError::TooLong { .. })),
                "{text}"
            );
        }
    }
}
