//! Exponential backoff with jitter, and the `--backoff 1s..5m` syntax.
//!
//! The n-th retry waits between half and all of `min × 2^(n-1)`, capped at `max` ("equal
//! jitter"): retries of invocations that failed together spread out instead of returning in
//! step, and a retry never comes back sooner than half its nominal delay.

use kindling_registry::RetryConfig;

/// The delay before retry number `retry` (1 for the first retry), in milliseconds.
pub fn delay_ms(policy: &RetryConfig, retry: u32) -> u64 {
    let nominal = nominal_ms(policy, retry);
    let half = nominal / 2;
    half + random_below(nominal - half + 1)
}

/// The delay before retry number `retry` without jitter.
pub fn nominal_ms(policy: &RetryConfig, retry: u32) -> u64 {
    let doublings = retry.saturating_sub(1).min(62);
    policy
        .backoff_min_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.backoff_max_ms)
}

fn random_below(bound: u64) -> u64 {
    if bound <= 1 {
        return 0;
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    u64::from_le_bytes(bytes) % bound
}

/// Parses `MIN..MAX` (`1s..5m`, `100ms..2s`) into milliseconds.
pub fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let Some((min, max)) = text.split_once("..") else {
        return Err(format!(
            "backoff {text:?} is not a range; write the first and the longest delay as `1s..5m`"
        ));
    };
    let parse = |part: &str| {
        humantime::parse_duration(part.trim())
            .map(|d| d.as_millis() as u64)
            .map_err(|err| format!("backoff {text:?}: {part:?} is not a duration ({err})"))
    };
    let (min, max) = (parse(min)?, parse(max)?);
    if min == 0 || min > max {
        return Err(format!(
            "backoff {text:?}: the first delay must be above zero and at most the longest"
        ));
    }
    Ok((min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: u64, max: u64) -> RetryConfig {
        RetryConfig {
            retries: 5,
            backoff_min_ms: min,
            backoff_max_ms: max,
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = policy(1_000, 5_000);
        let nominal: Vec<u64> = (1..=5).map(|n| nominal_ms(&p, n)).collect();
        assert_eq!(nominal, [1_000, 2_000, 4_000, 5_000, 5_000]);
        assert_eq!(nominal_ms(&p, 1000), 5_000);
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_nominal_delay() {
        let p = policy(100, 60_000);
        for retry in 1..=8 {
            let nominal = nominal_ms(&p, retry);
            for _ in 0..200 {
                let d = delay_ms(&p, retry);
                assert!(d >= nominal / 2 && d <= nominal, "{d} outside {nominal}");
            }
        }
    }

    #[test]
    fn ranges_parse_with_clear_errors() {
        assert_eq!(parse_range("1s..5m"), Ok((1_000, 300_000)));
        assert_eq!(parse_range("100ms..2s"), Ok((100, 2_000)));
        assert!(parse_range("1s").unwrap_err().contains("1s..5m"));
        assert!(parse_range("5m..1s").unwrap_err().contains("at most"));
        assert!(parse_range("x..1s").unwrap_err().contains("not a duration"));
    }
}
