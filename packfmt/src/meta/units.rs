//! Durations (`10s`, `1m30s`, `500ms`) and sizes (`64M`, `1G`) as pack.yaml writes them.

use std::time::Duration;

/// Parses a duration in snap.yaml's Go style: one or more `NUMBER UNIT` parts, units `ms`, `s`,
/// `m`, `h`; e.g. `10s`, `1m30s`, `1.5s`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {s:?}: write a number with a unit, such as 10s, 1m30s or 500ms (units: ms, s, m, h)"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
        rest = tail;
    }
    Ok(total)
}

/// Parses a size in bytes with an optional binary suffix `K`, `M`, `G` or `T` (as systemd does):
/// `1048576`, `512K`, `64M`, `1G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {s:?}: write a whole number of bytes with an optional K, M, G or T suffix, such as 64M"
        )
    };
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K')) => (&s[..i], 10),
        Some((i, 'M')) => (&s[..i], 20),
        Some((i, 'G')) => (&s[..i], 30),
        Some((i, 'T')) => (&s[..i], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "10", "s", "10x", "1..5s", ".5s", "5.s", "-1s", "1 s"] {
            assert_eq!(
                parse_duration(bad).unwrap_err(),
                format!(
                    "invalid duration {bad:?}: write a number with a unit, such as 10s, 1m30s or 500ms (units: ms, s, m, h)"
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in ["", "M", "64MB", "-1", "1.5G", "64m", "99999999999999T"] {
            assert_eq!(
                parse_size(bad).unwrap_err(),
                format!(
                    "invalid size {bad:?}: write a whole number of bytes with an optional K, M, G or T suffix, such as 64M"
                ),
                "{bad}"
            );
        }
    }
}
