//! Whether Kindling suits a deployed function: the requirements it declared at deploy, judged
//! against what Kindling's L-4 sandbox meets (the `kindling` component's `meets` in the
//! knowledge base) and against the limits the function actually runs with. When something is
//! not met, the general tree says what to use instead.

use serde::Serialize;

use crate::advise::{Advice, Answers, Origin};
use crate::error::AdviceError;
use crate::kb::KnowledgeBase;

/// What the advisor needs to know about a deployed function.
#[derive(Debug, Clone, Default)]
pub struct FunctionProfile {
    /// Its name.
    pub name: String,
    /// Requirements declared at deploy.
    pub requirements: Answers,
    /// Memory cap in bytes.
    pub memory_bytes: Option<u64>,
    /// Request deadline in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Fuel per request, when CPU budgets are on.
    pub fuel: Option<u64>,
    /// Hosts it may call.
    pub allowed_outbound_hosts: Vec<String>,
    /// Its last measured cold start, in milliseconds.
    pub last_cold_start_ms: Option<f64>,
}

/// The verdict for one function.
#[derive(Debug, Serialize)]
pub struct FunctionVerdict {
    /// The function.
    pub function: String,
    /// Whether every requirement the runtime answers for is met.
    pub meets: bool,
    /// One line per declared requirement.
    pub checks: Vec<RequirementCheck>,
    /// What to use instead, when something is not met.
    pub instead: Option<Advice>,
}

/// One declared requirement, judged.
#[derive(Debug, Serialize)]
pub struct RequirementCheck {
    /// The dimension.
    pub dimension: String,
    /// The level declared.
    pub required: String,
    /// The strongest level Kindling meets, when the runtime answers for this dimension.
    pub offered: Option<String>,
    /// Met, or not; `None` when the runtime does not answer for it (storage, say).
    pub met: Option<bool>,
    /// Why.
    pub reason: String,
}

impl KnowledgeBase {
    /// Judges a function's declared requirements against Kindling's sandbox and its limits.
    pub fn judge_function(
        &self,
        function: &FunctionProfile,
    ) -> Result<FunctionVerdict, AdviceError> {
        self.check_answers(&function.requirements)?;
        let kindling = self.components.get("kindling");
        let isolation = kindling
            .and_then(|c| c.isolation.as_ref())
            .map_or("L-4", |l| l.get_ref().as_str());
        let mut checks = Vec::new();
        for (dimension, required) in &function.requirements {
            let offered = kindling
                .and_then(|c| c.meets.get(dimension.as_str()))
                .map(|l| l.get_ref().clone());
            let Some(offered) = offered else {
                checks.push(RequirementCheck {
                    dimension: dimension.clone(),
                    required: required.clone(),
                    offered: None,
                    met: None,
                    reason: format!(
                        "not a runtime requirement; `kindling advise --set {dimension}={required}` answers it"
                    ),
                });
                continue;
            };
            let levels = self.levels(dimension).unwrap_or_default();
            let position = |l: &str| levels.iter().position(|x| x == l);
            let mut met = position(required) <= position(&offered);
            let mut reason = if met {
                self.met_reason(dimension, isolation, function)
            } else {
                format!("Kindling meets {dimension} up to {offered:?}")
            };
            let open_host = function.allowed_outbound_hosts.iter().find(|h| any_host(h));
            if met
                && dimension == "security"
                && position(required) >= position("high")
                && let Some(host) = open_host
            {
                met = false;
                reason = format!(
                    "its outbound allow-list {host:?} lets it call any host; list the hosts it needs"
                );
            }
            checks.push(RequirementCheck {
                dimension: dimension.clone(),
                required: required.clone(),
                offered: Some(offered),
                met: Some(met),
                reason,
            });
        }
        let meets = checks.iter().all(|c| c.met != Some(false));
        let instead = if meets {
            None
        } else {
            let runtime_only: Answers = function
                .requirements
                .iter()
                .filter(|(d, _)| self.levels(d).is_some())
                .map(|(d, l)| (d.clone(), l.clone()))
                .collect();
            let mut advice = self.advise(None, &runtime_only, None)?;
            // A walk that rests only on assumptions (storage, when none was declared) says
            // nothing about this function.
            advice.parts.retain(|part| {
                part.steps
                    .iter()
                    .any(|step| matches!(step.answer, Some((_, Origin::Given))))
            });
            Some(advice)
        };
        Ok(FunctionVerdict {
            function: function.name.clone(),
            meets,
            checks,
            instead,
        })
    }

    fn met_reason(&self, dimension: &str, isolation: &str, function: &FunctionProfile) -> String {
        match dimension {
            "security" => {
                let rank = self.strength_rank(isolation).map_or(String::new(), |r| {
                    format!(" (strength rank {} of {})", r + 1, self.isolation.strength.get_ref().len())
                });
                let mut limits = Vec::new();
                if let Some(memory) = function.memory_bytes {
                    limits.push(format!("memory capped at {} MiB", memory >> 20));
                }
                if let Some(timeout) = function.timeout_ms {
                    limits.push(format!("a {timeout} ms deadline"));
                }
                limits.push(if function.allowed_outbound_hosts.is_empty() {
                    "no outbound HTTP".to_string()
                } else {
                    format!("outbound HTTP only to {}", function.allowed_outbound_hosts.join(", "))
                });
                format!(
                    "{isolation} sandbox{rank}: an instance per request, no ambient authority, {}",
                    limits.join(", ")
                )
            }
            "startup" => match function.last_cold_start_ms {
                Some(ms) => format!("instances start per request from precompiled code; its last cold start took {ms:.2} ms"),
                None => "instances start per request from precompiled code; a cold start loads it from the artifact cache".to_string(),
            },
            "performance" => match function.fuel {
                Some(_) => "compiled ahead of time by Cranelift; note that its CPU budget (fuel) slows guest code".to_string(),
                None => "compiled ahead of time by Cranelift, near native speed without accelerators".to_string(),
            },
            "iteration" => "a deploy is one upload; every version is kept and `kindling rollback` is instant".to_string(),
            _ => "met".to_string(),
        }
    }
}

/// Whether an allow-list entry matches every host.
fn any_host(entry: &str) -> bool {
    let rest = entry.split_once("://").map_or(entry, |(_, rest)| rest);
    let host = rest.split(':').next().unwrap_or(rest);
    host == "*"
}
