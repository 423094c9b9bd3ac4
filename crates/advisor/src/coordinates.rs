//! Technology coordinates (seed 003): a point (isolation, orchestration, policy, year,
//! architecture, scenario, observability) names a stack and a stack has a point. Lookups that
//! miss return the nearest entries with their distance and the dimensions that differ.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::AdviceError;
use crate::kb::{Coordinate, CoordinateEntry, KnowledgeBase};

/// A stack found near a coordinate.
#[derive(Debug, Serialize)]
pub struct Match {
    /// The entry's coordinate.
    pub at: Coordinate,
    /// The stack.
    pub stack: String,
    /// 0 for an exact match; each dimension adds at most 1.
    pub distance: f64,
    /// What differs: (dimension, entry's value, asked value).
    pub differs: Vec<(String, String, String)>,
    /// `kindling` when the entry is not from the seeds.
    pub source: Option<String>,
}

/// A step of an evolution path with what changed since the previous one.
#[derive(Debug, Serialize)]
pub struct EvolutionStep {
    /// Where.
    pub at: Coordinate,
    /// The nearest stack there.
    pub nearest: Option<Match>,
    /// Changes from the previous step: (dimension, before, after).
    pub changes: Vec<(String, String, String)>,
}

/// A scenario's path through the years.
#[derive(Debug, Serialize)]
pub struct EvolutionPath {
    /// The scenario.
    pub scenario: String,
    /// The steps, oldest first.
    pub steps: Vec<EvolutionStep>,
    /// What changed for users.
    pub effect: String,
}

impl Coordinate {
    /// Parses `4,2,3,2025,1,edge,OTLP+eBPF`.
    pub fn parse(input: &str) -> Result<Self, AdviceError> {
        let bad = |reason: String| AdviceError::BadCoordinate {
            input: input.to_string(),
            reason,
        };
        let parts: Vec<&str> = input.split(',').map(str::trim).collect();
        let [
            isolation,
            orchestration,
            policy,
            year,
            architecture,
            scenario,
            observability,
        ] = parts[..]
        else {
            return Err(bad(format!(
                "expected 7 comma-separated values (isolation, orchestration, policy, year, architecture, scenario, observability), found {}",
                parts.len()
            )));
        };
        let number = |name: &str, value: &str| {
            value
                .parse::<u16>()
                .map_err(|_| bad(format!("{name} must be a number, not {value:?}")))
        };
        let small = |name: &str, value: &str| {
            number(name, value).and_then(|n| {
                u8::try_from(n).map_err(|_| bad(format!("{name} {n} is out of range")))
            })
        };
        if scenario.is_empty() || observability.is_empty() {
            return Err(bad("scenario and observability must not be empty".into()));
        }
        Ok(Self {
            isolation: small("isolation", isolation)?,
            orchestration: small("orchestration", orchestration)?,
            policy: small("policy", policy)?,
            year: number("year", year)?,
            architecture: small("architecture", architecture)?,
            scenario: scenario.to_string(),
            observability: observability.to_string(),
        })
    }
}

impl std::fmt::Display for Coordinate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}, {}, {}, {}, {}, {}, {})",
            self.isolation,
            self.orchestration,
            self.policy,
            self.year,
            self.architecture,
            self.scenario,
            self.observability
        )
    }
}

impl KnowledgeBase {
    /// Entries nearest to `at`, nearest first (an exact match has distance 0), at most `limit`.
    pub fn stacks_near(&self, at: &Coordinate, limit: usize) -> Vec<Match> {
        let mut matches: Vec<Match> = self
            .coordinates
            .iter()
            .map(|entry| self.match_entry(entry, at))
            .collect();
        matches.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        matches.truncate(limit);
        matches
    }

    /// Coordinates of a stack given by name (`K3s + WasmEdge + Gatekeeper`) or by component
    /// ids: exact matches, else the entries sharing the most components.
    pub fn coordinates_of(&self, stack: &str) -> Vec<Match> {
        let wanted = self.stack_parts(stack);
        let mut scored: Vec<(f64, &CoordinateEntry)> = self
            .coordinates
            .iter()
            .map(|entry| {
                let have: BTreeSet<String> = entry
                    .components
                    .iter()
                    .map(|c| c.get_ref().clone())
                    .collect();
                let common = wanted.intersection(&have).count() as f64;
                let all = wanted.union(&have).count().max(1) as f64;
                (1.0 - common / all, entry)
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let best = scored.first().map_or(1.0, |s| s.0);
        scored
            .into_iter()
            .filter(|(distance, _)| *distance < 1.0 && (*distance == best || best > 0.0))
            .take(3)
            .map(|(distance, entry)| Match {
                at: entry.at.get_ref().clone(),
                stack: entry.stack.clone(),
                distance,
                differs: Vec::new(),
                source: entry.source.clone(),
            })
            .collect()
    }

    /// The evolution path of `scenario`.
    pub fn evolution_of(&self, scenario: &str) -> Result<EvolutionPath, AdviceError> {
        let evolution = self
            .evolution
            .iter()
            .find(|e| e.scenario.eq_ignore_ascii_case(scenario))
            .ok_or_else(|| AdviceError::UnknownEvolution {
                name: scenario.to_string(),
                known: self
                    .evolution
                    .iter()
                    .map(|e| e.scenario.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let mut steps = Vec::new();
        let mut previous: Option<&Coordinate> = None;
        for step in &evolution.steps {
            let at = step.get_ref();
            let changes = previous.map_or_else(Vec::new, |before| {
                self.differences(before, at)
                    .into_iter()
                    .map(|(dimension, _, before, after)| (dimension, before, after))
                    .collect()
            });
            steps.push(EvolutionStep {
                at: at.clone(),
                nearest: self.stacks_near(at, 1).into_iter().next(),
                changes,
            });
            previous = Some(at);
        }
        Ok(EvolutionPath {
            scenario: evolution.scenario.clone(),
            steps,
            effect: evolution.effect.clone(),
        })
    }

    fn stack_parts(&self, stack: &str) -> BTreeSet<String> {
        // Parts are joined with ` + `; a bare `+` belongs to a name (`OPA+business rules`).
        stack
            .split(" + ")
            .flat_map(|part| part.split(','))
            .map(|part| part.trim().to_ascii_lowercase())
            .filter(|part| !part.is_empty())
            .map(|part| {
                let part = match part.as_str() {
                    "k8s" => "kubernetes".to_string(),
                    _ => part,
                };
                self.components
                    .iter()
                    .find(|(id, c)| {
                        id.get_ref().eq_ignore_ascii_case(&part)
                            || c.name.eq_ignore_ascii_case(&part)
                    })
                    .map_or(part, |(id, _)| id.get_ref().clone())
            })
            .collect()
    }

    fn match_entry(&self, entry: &CoordinateEntry, at: &Coordinate) -> Match {
        let here = entry.at.get_ref();
        let differences = self.differences(here, at);
        Match {
            at: here.clone(),
            stack: entry.stack.clone(),
            distance: differences.iter().map(|d| d.1).sum(),
            differs: differences
                .into_iter()
                .map(|(dimension, _, a, b)| (dimension, a, b))
                .collect(),
            source: entry.source.clone(),
        }
    }

    /// Per-dimension differences (name, weight 0..=1, `a`'s value, `b`'s value).
    fn differences(&self, a: &Coordinate, b: &Coordinate) -> Vec<(String, f64, String, String)> {
        let scales = &self.coordinate_scales;
        let levels = self.isolation.levels.len().max(2) - 1;
        let isolation_name = |n: u8| {
            self.isolation
                .levels
                .get(usize::from(n))
                .map_or_else(|| n.to_string(), |l| l.level.clone())
        };
        let scale_name = |scale: &[String], n: u8| {
            scale
                .get(usize::from(n))
                .map_or_else(|| n.to_string(), |s| format!("{n} {s}"))
        };
        let numeric = |x: u8, y: u8, span: usize| f64::from(x.abs_diff(y)) / span.max(1) as f64;
        let mut out = Vec::new();
        let mut push = |name: &str, weight: f64, x: String, y: String| {
            if weight > 0.0 {
                out.push((name.to_string(), weight.min(1.0), x, y));
            }
        };
        push(
            "isolation",
            numeric(a.isolation, b.isolation, levels),
            isolation_name(a.isolation),
            isolation_name(b.isolation),
        );
        push(
            "orchestration",
            numeric(
                a.orchestration,
                b.orchestration,
                scales.orchestration.len() - 1,
            ),
            scale_name(&scales.orchestration, a.orchestration),
            scale_name(&scales.orchestration, b.orchestration),
        );
        push(
            "policy",
            numeric(a.policy, b.policy, scales.policy.len() - 1),
            scale_name(&scales.policy, a.policy),
            scale_name(&scales.policy, b.policy),
        );
        // Five years apart counts as a whole dimension.
        push(
            "year",
            f64::from(a.year.abs_diff(b.year)) / 5.0,
            a.year.to_string(),
            b.year.to_string(),
        );
        push(
            "architecture",
            if a.architecture == b.architecture {
                0.0
            } else {
                1.0
            },
            format!("A{}", a.architecture),
            format!("A{}", b.architecture),
        );
        push(
            "scenario",
            if a.scenario.eq_ignore_ascii_case(&b.scenario) {
                0.0
            } else {
                1.0
            },
            a.scenario.clone(),
            b.scenario.clone(),
        );
        // Observability is a set (`OTLP+eBPF`): the share of tools not in common.
        let set = |s: &str| -> BTreeSet<String> {
            s.split('+')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect()
        };
        let (x, y) = (set(&a.observability), set(&b.observability));
        let common = x.intersection(&y).count() as f64;
        let all = x.union(&y).count().max(1) as f64;
        push(
            "observability",
            1.0 - common / all,
            a.observability.clone(),
            b.observability.clone(),
        );
        out
    }
}
