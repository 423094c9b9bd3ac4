//! Naming a keep-alive policy: `kindling serve --keep-alive-policy` and `kindling sim
//! --policy` take the same text, so a policy evaluated on a trace is the one a node runs.
//!
//! `fixed[:TTL]`, `lru`, `gdsf`, `hybrid[:KEY=VALUE,...]` or `kindling[:KEY=VALUE,...]`.
//! Durations are a number and a unit (`ms`, `s`, `m`, `h`).

use serde::Serialize;

use crate::gdsf::Gdsf;
use crate::hazard::{HazardConfig, HazardWindows};
use crate::hybrid::{HybridConfig, HybridHistogram};
use crate::keepalive::{FixedTtl, KeepAlivePolicy, Millis};

/// A keep-alive policy and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PolicySpec {
    /// Keep each function a fixed time after its last call.
    Fixed {
        /// The keep-alive.
        ttl: Millis,
    },
    /// Least recently used out first, only under a memory budget.
    Lru,
    /// Greedy-Dual-Size-Frequency, only under a memory budget.
    Gdsf,
    /// The hybrid histogram policy of Shahrad et al.
    Hybrid(HybridConfig),
    /// Kindling's default: hazard windows.
    Kindling(HazardConfig),
}

/// Why a policy name or parameter was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not a policy this crate has.
    #[error("unknown keep-alive policy {0:?}: expected fixed[:TTL], lru, gdsf, hybrid or kindling")]
    Unknown(String),
    /// A parameter the policy does not have, or a bad value.
    #[error("keep-alive policy {policy:?}: {problem}")]
    Parameter {
        /// The policy.
        policy: String,
        /// What was wrong.
        problem: String,
    },
}

impl PolicySpec {
    /// Kindling's default policy with `keep_alive` for functions without enough history.
    pub fn default_with(keep_alive: Millis) -> Self {
        Self::Kindling(HazardConfig {
            fallback: keep_alive,
            ..HazardConfig::default()
        })
    }

    /// Parses `text`; `keep_alive` is the TTL of a bare `fixed` and the fallback of
    /// `kindling`.
    pub fn parse(text: &str, keep_alive: Millis) -> Result<Self, PolicyError> {
        let (name, params) = match text.split_once(':') {
            Some((name, params)) => (name.trim(), Some(params.trim())),
            None => (text.trim(), None),
        };
        let bad = |problem: String| PolicyError::Parameter {
            policy: name.to_string(),
            problem,
        };
        let pairs = || -> Result<Vec<(&str, &str)>, PolicyError> {
            params
                .into_iter()
                .flat_map(|p| p.split(','))
                .filter(|p| !p.trim().is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.trim(), v.trim()))
                        .ok_or_else(|| bad(format!("expected KEY=VALUE, found {pair:?}")))
                })
                .collect()
        };
        let no_params = |spec: Self| match params {
            Some(p) => Err(bad(format!("takes no parameters, found {p:?}"))),
            None => Ok(spec),
        };
        match name {
            "fixed" => {
                let ttl = match params {
                    Some(ttl) => parse_millis(ttl).map_err(bad)?,
                    None => keep_alive,
                };
                Ok(Self::Fixed { ttl })
            }
            "lru" => no_params(Self::Lru),
            "gdsf" => no_params(Self::Gdsf),
            "hybrid" => {
                let mut config = HybridConfig::default();
                for (key, value) in pairs()? {
                    match key {
                        "bin" => config.bin = parse_millis(value).map_err(bad)?,
                        "head" => config.head = parse_share(value).map_err(bad)?,
                        "tail" => config.tail = parse_share(value).map_err(bad)?,
                        "margin" => config.margin = parse_share(value).map_err(bad)?,
                        "min-samples" => config.min_samples = parse_count(value).map_err(bad)?,
                        _ => {
                            return Err(bad(unknown_key(
                                key,
                                "bin, head, tail, margin, min-samples",
                            )));
                        }
                    }
                }
                Ok(Self::Hybrid(config))
            }
            "kindling" => {
                let mut config = HazardConfig {
                    fallback: keep_alive,
                    ..HazardConfig::default()
                };
                for (key, value) in pairs()? {
                    match key {
                        "bin" => config.bin = parse_millis(value).map_err(bad)?,
                        "hazard" => config.hazard = parse_share(value).map_err(bad)?,
                        "fallback" => config.fallback = parse_millis(value).map_err(bad)?,
                        "min-samples" => config.min_samples = parse_count(value).map_err(bad)?,
                        _ => {
                            return Err(bad(unknown_key(
                                key,
                                "bin, hazard, fallback, min-samples",
                            )));
                        }
                    }
                }
                Ok(Self::Kindling(config))
            }
            _ => Err(PolicyError::Unknown(text.to_string())),
        }
    }

    /// Whether the policy unloads only under a memory budget, so that without one it would
    /// keep everything forever.
    pub fn needs_budget(&self) -> bool {
        matches!(self, Self::Lru | Self::Gdsf)
    }

    /// A fresh policy with no history.
    pub fn build(&self) -> Box<dyn KeepAlivePolicy> {
        match self {
            Self::Fixed { ttl } => Box::new(FixedTtl::new(Some(*ttl))),
            Self::Lru => Box::new(FixedTtl::new(None)),
            Self::Gdsf => Box::new(Gdsf::new()),
            Self::Hybrid(config) => Box::new(HybridHistogram::new(*config)),
            Self::Kindling(config) => Box::new(HazardWindows::new(*config)),
        }
    }
}

fn unknown_key(key: &str, known: &str) -> String {
    format!("unknown parameter {key:?}; known: {known}")
}

/// `250ms`, `30s`, `10m`, `4h`.
pub(crate) fn parse_millis(text: &str) -> Result<Millis, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "ms" => 1.0,
        "s" => 1e3,
        "m" | "min" => 60e3,
        "h" => 3600e3,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: use a number and ms, s, m or h"
            ));
        }
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok((n * scale).round() as Millis),
        _ => Err(format!(
            "{text:?} is not a duration: use a number and ms, s, m or h"
        )),
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("{text:?} is not a share between 0 and 1")),
    }
}

fn parse_count(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_policy_and_names_it() {
        let parse = |text| PolicySpec::parse(text, 600_000).unwrap().build().name();
        assert_eq!(parse("fixed"), "fixed-ttl-10m");
        assert_eq!(parse("fixed:90s"), "fixed-ttl-90s");
        assert_eq!(parse("lru"), "lru");
        assert_eq!(parse("gdsf"), "gdsf");
        assert_eq!(parse("hybrid"), "hybrid-histogram");
        assert_eq!(parse("kindling:hazard=0.2, min-samples=5"), "kindling");
        assert_eq!(
            PolicySpec::parse("kindling:hazard=0.2,bin=30s", 1000),
            Ok(PolicySpec::Kindling(HazardConfig {
                hazard: 0.2,
                bin: 30_000,
                fallback: 1000,
                ..HazardConfig::default()
            }))
        );
        assert!(PolicySpec::parse("gdsf", 0).unwrap().needs_budget());
        assert!(!PolicySpec::default_with(0).needs_budget());
    }

    #[test]
    fn refusals_say_what_was_wrong() {
        let error = |text| PolicySpec::parse(text, 0).unwrap_err().to_string();
        assert_eq!(
            error("ttl"),
            "unknown keep-alive policy \"ttl\": expected fixed[:TTL], lru, gdsf, hybrid or kindling"
        );
        assert_eq!(
            error("fixed:10 minutes"),
            "keep-alive policy \"fixed\": \"10 minutes\" is not a duration: use a number and ms, s, m or h"
        );
        assert_eq!(
            error("kindling:hazard=2"),
            "keep-alive policy \"kindling\": \"2\" is not a share between 0 and 1"
        );
        assert_eq!(
            error("hybrid:speed=1"),
            "keep-alive policy \"hybrid\": unknown parameter \"speed\"; known: bin, head, tail, margin, min-samples"
        );
        assert_eq!(
            error("lru:x=1"),
            "keep-alive policy \"lru\": takes no parameters, found \"x=1\""
        );
        assert_eq!(
            error("kindling:hazard"),
            "keep-alive policy \"kindling\": expected KEY=VALUE, found \"hazard\""
        );
    }
}
