//! `timeout = "5s"`: durations written as the CLI's `--timeout` is, parsed at compile time.
//!
//! The grammar: one or more `<number><unit>` parts (`5s`, `250ms`, `1m30s`, `1.5s`), where a
//! number is digits with at most one `.`, and a unit is `ms`, `s`, `m` or `h`; or `0` alone (one
//! attempt). The result is a whole number of milliseconds: a part finer than that (`0.5ms`) is
//! an error, not rounded.

/// Milliseconds in each unit.
const UNITS: [(&str, u128); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Parses `text` into milliseconds; the error says what is wrong, without the text itself.
pub(crate) fn parse_millis(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("the duration is empty".to_owned());
    }
    if text == "0" {
        return Ok(0);
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        if number.is_empty() {
            return Err(format!("expected a number before {unit:?}"));
        }
        if unit.is_empty() {
            return Err(format!("the number {number:?} needs a unit"));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit {unit:?}"));
        };
        total = total
            .checked_add(part_millis(number, unit, scale)?)
            .filter(|&t| t <= u128::from(u64::MAX))
            .ok_or_else(|| "the duration is too long".to_owned())?;
        rest = next;
    }
    // Checked on every addition above.
    Ok(u64::try_from(total).unwrap_or(u64::MAX))
}

/// `number` (digits, at most one `.`) times `scale` milliseconds, exactly.
fn part_millis(number: &str, unit: &str, scale: u128) -> Result<u128, String> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(format!("{number:?} is not a number"));
    }
    let too_long = || "the duration is too long".to_owned();
    // 20 digits already exceed u64::MAX milliseconds; longer inputs must not overflow u128.
    if whole.trim_start_matches('0').len() > 20 || fraction.len() > 20 {
        return Err(too_long());
    }
    let digits = |s: &str| -> u128 { s.bytes().fold(0, |n, b| n * 10 + u128::from(b - b'0')) };
    let denominator = 10u128.pow(fraction.len() as u32);
    let fraction_millis = digits(fraction) * scale;
    if fraction_millis % denominator != 0 {
        return Err(format!("{number}{unit} is finer than a millisecond"));
    }
    digits(whole)
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction_millis / denominator))
        .ok_or_else(too_long)
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn units_and_compounds() {
        assert_eq!(parse_millis("0"), Ok(0));
        assert_eq!(parse_millis("250ms"), Ok(250));
        assert_eq!(parse_millis("5s"), Ok(5_000));
        assert_eq!(parse_millis("2m"), Ok(120_000));
        assert_eq!(parse_millis("1h"), Ok(3_600_000));
        assert_eq!(parse_millis("1m30s"), Ok(90_000));
        assert_eq!(parse_millis("1h2m3s4ms"), Ok(3_723_004));
        assert_eq!(parse_millis("0s"), Ok(0));
        assert_eq!(parse_millis("007s"), Ok(7_000));
    }

    #[test]
    fn fractions_are_exact() {
        assert_eq!(parse_millis("1.5s"), Ok(1_500));
        assert_eq!(parse_millis("0.25s"), Ok(250));
        assert_eq!(parse_millis(".5s"), Ok(500));
        assert_eq!(parse_millis("5.s"), Ok(5_000));
        assert_eq!(parse_millis("0.001s"), Ok(1));
        assert_eq!(parse_millis("1.5h"), Ok(5_400_000));
        assert_eq!(
            parse_millis("0.5ms").unwrap_err(),
            "0.5ms is finer than a millisecond"
        );
        assert_eq!(
            parse_millis("0.0001s").unwrap_err(),
            "0.0001s is finer than a millisecond"
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(parse_millis("").unwrap_err(), "the duration is empty");
        assert_eq!(
            parse_millis("5").unwrap_err(),
            "the number \"5\" needs a unit"
        );
        assert_eq!(
            parse_millis("1m30").unwrap_err(),
            "the number \"30\" needs a unit"
        );
        assert_eq!(parse_millis("5x").unwrap_err(), "unknown unit \"x\"");
        assert_eq!(parse_millis("5 s").unwrap_err(), "unknown unit \" s\"");
        assert_eq!(parse_millis("5sec").unwrap_err(), "unknown unit \"sec\"");
        assert_eq!(
            parse_millis("s").unwrap_err(),
            "expected a number before \"s\""
        );
        assert_eq!(
            parse_millis("-1s").unwrap_err(),
            "expected a number before \"-\""
        );
        assert_eq!(
            parse_millis("1.2.3s").unwrap_err(),
            "\"1.2.3\" is not a number"
        );
        assert_eq!(parse_millis(".s").unwrap_err(), "\".\" is not a number");
        assert_eq!(parse_millis("1e3s").unwrap_err(), "unknown unit \"e\"");
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(parse_millis("18446744073709551615ms"), Ok(u64::MAX));
        assert!(parse_millis("18446744073709551616ms").is_err());
        assert!(parse_millis("18446744073709552s").is_err());
        assert!(parse_millis(&format!("{}h", "9".repeat(60))).is_err());
        assert!(parse_millis(&format!("1.{}s", "0".repeat(60))).is_err());
        assert!(parse_millis(&"9999999999h".repeat(3000)).is_err());
    }
}
