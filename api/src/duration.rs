//! Durations written the way the CRD's CEL rules accept them (`500ms`, `30s`, `5m`, `1h30m`).

use std::time::Duration;

/// Parses `([0-9]+(ms|s|m|h))+` into a duration; `None` for anything else (or an overflow).
pub fn parse(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut millis: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        millis = millis.checked_add(number.checked_mul(unit)?)?;
    }
    Some(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_the_cel_rule() {
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1m500ms"), Some(Duration::from_millis(60_500)));
        for bad in ["", "30", "s", "30 seconds", "1.5s", "-1s", "1d"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
