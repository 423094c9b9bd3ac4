//! Scenario files: a target and a list of phases in TOML, so that a whole benchmark (the
//! seed's burst and sustained table, an overload run) is one command.
//!
//! ```toml
//! target = "http://127.0.0.1:3000/hello/"   # the URL on the command line overrides it
//!
//! [[phase]]
//! name = "burst"
//! rate = 1000              # open loop, requests per second
//! duration = "10s"
//! connections = 64         # optional, default 64
//!
//! [[phase]]
//! name = "ramp"
//! rate = [100, 2000]       # from, to
//! duration = "20s"
//!
//! [[phase]]
//! name = "max"
//! closed = 64              # closed loop with 64 connections
//! duration = "10s"
//! ```

use std::time::Duration;

use serde::Deserialize;

use crate::spec::{Load, Phase};

/// Connections an open-loop phase uses unless it says otherwise.
const DEFAULT_CONNECTIONS: usize = 64;

/// A parsed scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The URL to load, unless one is given on the command line.
    pub target: Option<String>,
    /// The phases, run in order.
    pub phases: Vec<Phase>,
}

/// A scenario file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("scenario: {0}")]
pub struct ScenarioError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    target: Option<String>,
    #[serde(rename = "phase")]
    phases: Vec<PhaseFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseFile {
    name: String,
    duration: String,
    rate: Option<Rate>,
    closed: Option<usize>,
    connections: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Rate {
    Constant(f64),
    Ramp([f64; 2]),
}

impl Scenario {
    /// Parses a scenario from TOML text.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let file: File = toml::from_str(text).map_err(|e| ScenarioError(e.to_string()))?;
        if file.phases.is_empty() {
            return Err(ScenarioError("no [[phase]] tables".into()));
        }
        let phases = file
            .phases
            .into_iter()
            .map(|p| {
                let duration = humantime::parse_duration(&p.duration).map_err(|e| {
                    ScenarioError(format!(
                        "phase {:?}: duration {:?}: {e}",
                        p.name, p.duration
                    ))
                })?;
                if duration < Duration::from_millis(100) {
                    return Err(ScenarioError(format!(
                        "phase {:?}: a phase lasts at least 100ms",
                        p.name
                    )));
                }
                let load = match (p.rate, p.closed) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(ScenarioError(format!(
                            "phase {:?}: give either `rate` (open loop) or `closed` (closed loop)",
                            p.name
                        )));
                    }
                    (Some(rate), None) => {
                        let (from, to) = match rate {
                            Rate::Constant(r) => (r, r),
                            Rate::Ramp([from, to]) => (from, to),
                        };
                        if from <= 0.0 || to <= 0.0 || !from.is_finite() || !to.is_finite() {
                            return Err(ScenarioError(format!(
                                "phase {:?}: rates must be positive",
                                p.name
                            )));
                        }
                        Load::Open {
                            from,
                            to,
                            connections: p.connections.unwrap_or(DEFAULT_CONNECTIONS).max(1),
                        }
                    }
                    (None, Some(connections)) => Load::Closed {
                        connections: connections.max(1),
                    },
                };
                Ok(Phase {
                    name: p.name,
                    load,
                    duration,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            target: file.target,
            phases,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_open_ramp_and_closed_phases() {
        let scenario = Scenario::parse(
            r#"
            target = "http://127.0.0.1:3000/hello/"
            [[phase]]
            name = "burst"
            rate = 1000
            duration = "10s"
            [[phase]]
            name = "ramp"
            rate = [100, 2000]
            duration = "20s"
            connections = 8
            [[phase]]
            name = "max"
            closed = 64
            duration = "1s"
            "#,
        )
        .unwrap();
        assert_eq!(scenario.phases.len(), 3);
        assert_eq!(
            scenario.phases[0].load,
            Load::Open {
                from: 1000.0,
                to: 1000.0,
                connections: 64
            }
        );
        assert_eq!(
            scenario.phases[1].load,
            Load::Open {
                from: 100.0,
                to: 2000.0,
                connections: 8
            }
        );
        assert_eq!(scenario.phases[2].load, Load::Closed { connections: 64 });
    }

    #[test]
    fn mistakes_are_named() {
        let err = Scenario::parse("[[phase]]\nname='x'\nduration='1s'\n").unwrap_err();
        assert!(err.to_string().contains("either `rate`"), "{err}");
        let err = Scenario::parse("[[phase]]\nname='x'\nduration='soon'\nrate=1\n").unwrap_err();
        assert!(err.to_string().contains("duration"), "{err}");
        let err =
            Scenario::parse("[[phase]]\nname='x'\nduration='1s'\nrate=1\nrats=2\n").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(Scenario::parse("target='x'\nphase=[]\n").is_err());
    }
}
