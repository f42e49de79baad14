//! Go's `time.ParseDuration` syntax (upstream's `certDuration` is a Go duration), positive only.
use std::time::Duration;

/// Go's `time.ParseDuration` for positive durations: `1h30m`, `10m`, `1.5h`, `90s`, `500ms`.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err("must be positive".into());
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid number {number:?}"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" if text == "0" => 0.0,
            "" => return Err("missing unit (ns, us, ms, s, m, h)".into()),
            other => return Err(format!("unknown unit {other:?}")),
        };
        total += value * scale;
        rest = after;
    }
    if total <= 0.0 {
        return Err("must be positive".into());
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        let ok = [
            ("10m", 600.0),
            ("24h", 86400.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("90s", 90.0),
            ("500ms", 0.5),
            ("+3s", 3.0),
            ("2m0.5s", 120.5),
            ("1500us", 0.0015),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_go_duration(text).unwrap().as_secs_f64(),
                secs,
                "{text}"
            );
        }
        for bad in ["", "10", "-5m", "0", "0s", "5d", "m", "1..5s", "1h-2m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
