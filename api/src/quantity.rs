//! Byte sizes written as Kubernetes quantities (`1Gi`, `500M`, `1048576`).

/// Parses a quantity into bytes. Accepts a plain integer, binary suffixes (Ki, Mi, Gi, Ti, Pi,
/// Ei) and decimal ones (k, M, G, T, P, E). Fractions (`1.5Gi`) are rounded down to a byte.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    if number.is_empty() {
        return None;
    }
    match number.split_once('.') {
        None => number.parse::<u64>().ok()?.checked_mul(factor),
        Some((whole, fraction)) => {
            let whole: u64 = if whole.is_empty() {
                0
            } else {
                whole.parse().ok()?
            };
            let digits = fraction.len().min(18) as u32;
            let fraction: u64 = if fraction.is_empty() {
                0
            } else {
                fraction[..digits as usize].parse().ok()?
            };
            let scale = 10u64.pow(digits);
            let frac_bytes = (u128::from(fraction) * u128::from(factor) / u128::from(scale)) as u64;
            whole.checked_mul(factor)?.checked_add(frac_bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

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
    }
}
