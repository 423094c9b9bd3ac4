//! Advice as text for a terminal and as a Mermaid flowchart for docs, with the path taken
//! highlighted. (JSON is the serde form of the same structs.)

use std::fmt::Write;

use crate::advise::{Advice, Alternative, Origin, Outcome};
use crate::coordinates::{EvolutionPath, Match};
use crate::function::FunctionVerdict;
use crate::kb::{Branch, KnowledgeBase};

impl KnowledgeBase {
    /// Advice as text.
    pub fn advice_text(&self, advice: &Advice) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} ({} tree)", advice.title, advice.tree);
        for part in &advice.parts {
            let _ = writeln!(out);
            for (n, step) in part.steps.iter().enumerate() {
                let answer = match &step.answer {
                    Some((level, origin)) => format!("{level} ({})", origin_text(*origin)),
                    None => "no answer".to_string(),
                };
                let _ = writeln!(out, "{}. {} {answer}", n + 1, step.question);
                if !step.stack.is_empty() {
                    let _ = writeln!(out, "   choice so far: {}", self.names(&step.stack));
                }
                if let Some(reason) = &step.reason {
                    let _ = writeln!(out, "   -> {reason}");
                }
                for alternative in &step.not_taken {
                    let _ = writeln!(
                        out,
                        "   if {} were {}: {}",
                        step.dimension,
                        alternative.when.join("/"),
                        self.leads_to(alternative),
                    );
                }
            }
            match &part.outcome {
                Outcome::Recommend {
                    components, source, ..
                } => {
                    let note = if source.as_deref() == Some("kindling") {
                        " (a branch the technology-selection decision tree leaves open, filled in by Kindling)"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "=> {}{note}", self.names(components));
                }
                Outcome::Open { dimension, options } => {
                    let _ = writeln!(
                        out,
                        "=> depends on {dimension} (give --set {dimension}=LEVEL):"
                    );
                    for option in options {
                        let _ = writeln!(
                            out,
                            "   {}: {} ({})",
                            option.when.join("/"),
                            self.leads_to(option),
                            option.reason
                        );
                    }
                }
            }
        }
        if !advice.summary.is_empty() && advice.tree != "general" {
            let _ = writeln!(
                out,
                "\nThe technology-selection decision tree's recommendation for this scenario:"
            );
            for (part, ids) in &advice.summary {
                let _ = writeln!(out, "  {part}: {}", self.names(ids));
            }
        }
        if !advice.analysis.is_empty() {
            let _ = writeln!(out, "\nEach requirement on its own:");
            for a in &advice.analysis {
                let _ = writeln!(
                    out,
                    "  {} {}: {} ({})",
                    a.dimension,
                    a.level,
                    self.names_or(&a.recommend),
                    a.reason
                );
            }
        }
        if !advice.nearest_scenarios.is_empty() {
            let _ = writeln!(out, "\nNearest scenarios in the decision matrix:");
            for row in advice.nearest_scenarios.iter().take(3) {
                let differs = if row.differs.is_empty() {
                    "same requirements".to_string()
                } else {
                    row.differs
                        .iter()
                        .map(|(d, theirs, yours)| format!("{d} {theirs} vs your {yours}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    out,
                    "  {} (distance {}: {differs}): {}",
                    row.scenario,
                    row.distance,
                    self.names(&row.recommend)
                );
            }
        }
        out
    }

    /// A function's verdict as text.
    pub fn verdict_text(&self, verdict: &FunctionVerdict) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {}",
            verdict.function,
            if verdict.meets {
                "Kindling's sandbox meets its declared requirements"
            } else {
                "Kindling does not meet all its declared requirements"
            }
        );
        if verdict.checks.is_empty() {
            let _ = writeln!(
                out,
                "  it declares no requirements (deploy with --require security=high ...)"
            );
        }
        for check in &verdict.checks {
            let mark = match check.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "n/a",
            };
            let _ = writeln!(
                out,
                "  {:<8} {} {}: {}",
                mark, check.dimension, check.required, check.reason
            );
        }
        if let Some(instead) = &verdict.instead {
            let _ = writeln!(out, "\nWhat to use instead:");
            for line in self.advice_text(instead).lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        out
    }

    /// Coordinate matches as text.
    pub fn matches_text(&self, matches: &[Match]) -> String {
        let mut out = String::new();
        if matches.is_empty() {
            let _ = writeln!(out, "no stack in the knowledge base is near it");
        }
        for m in matches {
            let how = if m.distance == 0.0 {
                "exact".to_string()
            } else if m.differs.is_empty() {
                format!("distance {:.2}", m.distance)
            } else {
                format!(
                    "distance {:.2}: {}",
                    m.distance,
                    m.differs
                        .iter()
                        .map(|(d, here, asked)| format!("{d} {here} vs {asked}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let source = if m.source.as_deref() == Some("kindling") {
                " [added by Kindling, not from the technology relation network]"
            } else {
                ""
            };
            let _ = writeln!(out, "{} at {} ({how}){source}", m.stack, m.at);
        }
        out
    }

    /// An evolution path as text.
    pub fn evolution_text(&self, path: &EvolutionPath) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{} over the years", path.scenario);
        for step in &path.steps {
            let stack = step.nearest.as_ref().map_or("?".to_string(), |m| {
                if m.distance == 0.0 {
                    m.stack.clone()
                } else {
                    format!("nearest: {} (distance {:.2})", m.stack, m.distance)
                }
            });
            let _ = writeln!(out, "  {}: {} -> {stack}", step.at.year, step.at);
            for (d, before, after) in &step.changes {
                if d != "year" {
                    let _ = writeln!(out, "      {d}: {before} -> {after}");
                }
            }
        }
        if !path.effect.is_empty() {
            let _ = writeln!(out, "  effect: {}", path.effect);
        }
        out
    }

    /// The isolation levels with their strength and overhead ranks, and the timeline.
    pub fn isolation_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "level  name                 examples                   strength  overhead"
        );
        for level in &self.isolation.levels {
            let _ = writeln!(
                out,
                "{:<6} {:<20} {:<26} {:<9} {}",
                level.level,
                level.name,
                level.examples,
                self.strength_rank(&level.level).map_or(0, |r| r + 1),
                self.overhead_rank(&level.level).map_or(0, |r| r + 1)
            );
        }
        let order = |groups: &[Vec<String>], sep: &str| {
            groups
                .iter()
                .map(|g| g.join(" = "))
                .collect::<Vec<_>>()
                .join(sep)
        };
        let _ = writeln!(
            out,
            "strength: {}   (1 = strongest)",
            order(self.isolation.strength.get_ref(), " > ")
        );
        let _ = writeln!(
            out,
            "overhead: {}   (1 = cheapest)",
            order(self.isolation.overhead.get_ref(), " < ")
        );
        if !self.milestones.is_empty() {
            let _ = writeln!(out, "\ntimeline:");
            for m in &self.milestones {
                let _ = writeln!(out, "  {} {}: {}", m.year, m.technology, m.change);
            }
        }
        out
    }

    /// A tree as a Mermaid flowchart; the nodes and leaves on `advice`'s path are highlighted.
    pub fn mermaid(&self, tree_name: &str, advice: Option<&Advice>) -> Option<String> {
        let tree = self.tree(tree_name)?;
        let mut out = String::from("flowchart TD\n");
        let _ = writeln!(out, "  root([\"{}\"])", escape(&tree.title));
        let taken_nodes: Vec<&str> = advice
            .map(|a| {
                a.parts
                    .iter()
                    .flat_map(|p| p.steps.iter().filter(|s| s.answer.is_some()))
                    .map(|s| s.node.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let mut highlighted = vec!["root".to_string()];
        let mut leaf = 0;
        for root in &tree.roots {
            let _ = writeln!(out, "  root --> n_{}", ident(root.get_ref()));
        }
        for node in &tree.nodes {
            let id = format!("n_{}", ident(node.id.get_ref()));
            let question = self
                .dimensions
                .get(node.ask.get_ref().as_str())
                .map_or(node.ask.get_ref().as_str(), |d| d.question.as_str());
            let stack = if node.stack.is_empty() {
                String::new()
            } else {
                format!(
                    "<br/>{}",
                    escape(&self.names(&crate::advise::ids(&node.stack)))
                )
            };
            let _ = writeln!(out, "  {id}{{\"{}{stack}\"}}", escape(question));
            let on_path = taken_nodes.contains(&node.id.get_ref().as_str());
            if on_path {
                highlighted.push(id.clone());
            }
            for branch in &node.branches {
                let label = escape(&branch_label(branch));
                let target = match &branch.next {
                    Some(next) => format!("n_{}", ident(next.get_ref())),
                    None => {
                        leaf += 1;
                        let leaf_id = format!("l{leaf}");
                        let _ = writeln!(
                            out,
                            "  {leaf_id}[\"{}\"]",
                            escape(&self.names(&crate::advise::ids(&branch.recommend)))
                        );
                        leaf_id
                    }
                };
                let _ = writeln!(out, "  {id} -- \"{label}\" --> {target}");
                let taken = on_path
                    && advice.is_some_and(|a| {
                        a.parts.iter().flat_map(|p| &p.steps).any(|s| {
                            s.node == *node.id.get_ref()
                                && s.answer.as_ref().is_some_and(|(level, _)| {
                                    branch.when.iter().any(|w| w.get_ref() == level)
                                })
                        })
                    });
                if taken && branch.next.is_none() {
                    highlighted.push(target);
                }
            }
        }
        if advice.is_some() {
            let _ = writeln!(
                out,
                "  classDef taken fill:#fde2c8,stroke:#e25822,stroke-width:3px"
            );
            let _ = writeln!(out, "  class {} taken", highlighted.join(","));
        }
        Some(out)
    }

    fn leads_to(&self, alternative: &Alternative) -> String {
        alternative
            .leads_to
            .iter()
            .map(|ids| self.names(ids))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn names_or(&self, ids: &[String]) -> String {
        ids.iter()
            .map(|id| self.name(id))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn origin_text(origin: Origin) -> &'static str {
    match origin {
        Origin::Given => "given",
        Origin::Asked => "answered",
        Origin::Scenario => "scenario's matrix row",
        Origin::Assumed => "assumed; set it to change",
    }
}

fn branch_label(branch: &Branch) -> String {
    crate::advise::ids(&branch.when).join(" / ")
}

fn ident(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('"', "#quot;")
}
