//! Byte sizes written as Kubernetes quantities (`1Gi`, `500M`, `1048576`).

/// Parses a quantity into bytes: any Kubernetes quantity (`1Gi`, `500M`, `1048576`, `1e9`) that
/// is not negative; fractions of a byte (`1.5`, `500m`) are rounded down.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let nanos = nanos(text)?;
    if nanos < 0 {
        return None;
    }
    u64::try_from(nanos / 1_000_000_000).ok()
}

/// The value of any Kubernetes quantity (`1Gi`, `500m`, `1e3`, `1.5`), in billionths, so that
/// two spellings of one value compare equal (`1024Mi` and `1Gi`, `0.5` and `500m`): the API
/// server rewrites quantities in their canonical form. `None` when it is not a quantity or the
/// value does not fit.
pub fn nanos(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return None;
    }
    // (power of ten, power of two)
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse::<i32>().ok()?, 0),
        _ => return None,
    };
    let digits = format!("{whole}{fraction}");
    let mut value: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let scale = 9 + exp10 - i32::try_from(fraction.len()).ok()?;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(u32::try_from(scale).ok()?)?)?;
    } else {
        let divisor = 10i128.checked_pow(u32::try_from(-scale).ok()?)?;
        // Below a billionth: rounded up, as Kubernetes does.
        value = value / divisor + i128::from(value % divisor != 0);
    }
    value = value.checked_mul(1i128.checked_shl(exp2)?)?;
    Some(if negative { -value } else { value })
}

/// True when both texts are quantities of the same value (`1024Mi` and `1Gi`).
pub fn same_value(a: &str, b: &str) -> bool {
    matches!((nanos(a), nanos(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::{nanos, parse_bytes, same_value};

    #[test]
    fn spellings_of_one_value_are_the_same() {
        assert!(same_value("1024Mi", "1Gi"));
        assert!(same_value("1048576", "1Mi"));
        assert!(same_value("1000M", "1G"));
        assert!(same_value("0.5", "500m"));
        assert!(same_value("1e3", "1k"));
        assert!(same_value("1.5Gi", "1536Mi"));
        assert!(!same_value("1Gi", "1G"));
        assert!(!same_value("banana", "banana"), "not quantities");
        assert_eq!(nanos("-5"), Some(-5_000_000_000));
        assert_eq!(nanos("10m"), Some(10_000_000));
        assert_eq!(nanos("Gi"), None);
        assert_eq!(nanos("1..5"), None);
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("1Gi"), Some(1 << 30));
        assert_eq!(parse_bytes("1.5Ki"), Some(1536));
        assert_eq!(parse_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_bytes("2k"), Some(2000));
        assert_eq!(parse_bytes("1Xi"), None);
        assert_eq!(parse_bytes("Gi"), None);
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse_bytes("20000000Ei"), None, "overflow is refused");
        assert_eq!(parse_bytes("1e3"), Some(1000));
    }
}
