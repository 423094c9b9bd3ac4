//! The knowledge base: requirement dimensions, components, decision matrices, decision trees,
//! isolation levels and technology coordinates, read from TOML and checked as a whole before
//! anything uses it. Every reference (a node's `next`, a component id, a dimension level) keeps
//! its position in the file, so a problem is reported with the line it is on.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{KbError, Problem};

/// The knowledge base compiled into the binary.
pub const EMBEDDED: &str = include_str!("../data/knowledge-base.toml");

/// A checked knowledge base.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeBase {
    /// Requirement dimensions by name.
    pub dimensions: BTreeMap<Spanned<String>, Dimension>,
    /// What recommendations are made of, by id.
    pub components: BTreeMap<Spanned<String>, Component>,
    /// What one requirement level calls for on its own.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Runtime choice per scenario.
    #[serde(default)]
    pub runtime_matrix: Vec<MatrixRow>,
    /// Storage choice per workload.
    #[serde(default)]
    pub storage_matrix: Vec<StorageRow>,
    /// Decision trees by name; `general` is the one used without a scenario.
    pub trees: BTreeMap<Spanned<String>, Tree>,
    /// Isolation levels and their orders.
    pub isolation: Isolation,
    /// Names of the coordinate scales.
    pub coordinate_scales: CoordinateScales,
    /// Coordinates with the stack found there.
    #[serde(default)]
    pub coordinates: Vec<CoordinateEntry>,
    /// Scenarios' coordinates over the years.
    #[serde(default)]
    pub evolution: Vec<Evolution>,
    /// The technology timeline.
    #[serde(default)]
    pub milestones: Vec<Milestone>,
}

/// A requirement and its levels, weakest demand first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// The question that asks for it.
    pub question: String,
    /// Its levels, weakest demand first.
    pub levels: Spanned<Vec<String>>,
}

/// Something a recommendation is made of.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Display name.
    pub name: String,
    /// runtime, orchestrator, storage, policy, accelerator or tooling.
    pub kind: String,
    /// virtual machine, container, sandbox or mixed.
    #[serde(default)]
    pub family: Option<String>,
    /// Isolation level (`L-0`..`L-4`) for runtimes.
    #[serde(default)]
    pub isolation: Option<Spanned<String>>,
    /// One line about it.
    #[serde(default)]
    pub note: String,
    /// The strongest demand it meets, per dimension.
    #[serde(default)]
    pub meets: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// Requirement analysis: one level of one dimension calls for these components.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The dimension.
    pub dimension: Spanned<String>,
    /// Its level.
    pub level: Spanned<String>,
    /// Components that suit it.
    pub recommend: Vec<Spanned<String>>,
    /// Where it applies.
    #[serde(default)]
    pub scenarios: Vec<String>,
    /// Why.
    pub reason: String,
}

/// A row of the runtime decision matrix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixRow {
    /// The scenario (a tree of the same name supplies its defaults).
    pub scenario: Spanned<String>,
    /// Requirement levels by dimension.
    pub requirements: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Recommended components.
    pub recommend: Vec<Spanned<String>>,
}

/// A row of the storage decision matrix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageRow {
    /// The workload, a level of the `storage` dimension.
    pub workload: Spanned<String>,
    /// Requirement levels by dimension.
    pub requirements: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Recommended components.
    pub recommend: Vec<Spanned<String>>,
}

/// A decision tree: nodes asking one dimension each, walked from each root in turn.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Display title.
    pub title: String,
    /// Where walks start (runtime first, then storage).
    pub roots: Vec<Spanned<String>>,
    /// The seed's overall recommendation, by part (runtime, storage, configuration).
    #[serde(default)]
    pub summary: BTreeMap<String, Vec<Spanned<String>>>,
    /// The nodes.
    pub nodes: Vec<Node>,
}

/// A question in a tree.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique within the tree.
    pub id: Spanned<String>,
    /// The dimension it asks about.
    pub ask: Spanned<String>,
    /// The answer assumed when none is given.
    #[serde(default)]
    pub default: Option<Spanned<String>>,
    /// The choice made by reaching this node.
    #[serde(default)]
    pub stack: Vec<Spanned<String>>,
    /// Where each answer leads.
    pub branches: Vec<Branch>,
    /// `kindling` where the seeds did not draw this node.
    #[serde(default)]
    pub source: Option<String>,
}

/// Where some answers lead: to another node, or to a recommendation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    /// The answers that take it.
    pub when: Vec<Spanned<String>>,
    /// The next node.
    #[serde(default)]
    pub next: Option<Spanned<String>>,
    /// The recommendation, when this branch ends the walk.
    #[serde(default)]
    pub recommend: Vec<Spanned<String>>,
    /// Why.
    pub reason: String,
    /// `kindling` where the seeds did not draw this branch.
    #[serde(default)]
    pub source: Option<String>,
}

/// Isolation levels with their strength and overhead orders.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Isolation {
    /// The levels.
    pub levels: Vec<IsolationLevel>,
    /// Strongest first; a group holds equals.
    pub strength: Spanned<Vec<Vec<String>>>,
    /// Cheapest first; a group holds equals.
    pub overhead: Spanned<Vec<Vec<String>>>,
}

/// One isolation level.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationLevel {
    /// `L-0`..`L-4`.
    pub level: String,
    /// What it is.
    pub name: String,
    /// Technologies at this level.
    pub examples: String,
    /// How it isolates.
    pub relation: String,
}

/// Names for the numbered coordinate scales.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinateScales {
    /// Orchestration 0..
    pub orchestration: Vec<String>,
    /// Policy 0..
    pub policy: Vec<String>,
    /// Architecture 1..
    pub architecture: Vec<String>,
}

/// A point in the technology space.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Coordinate {
    /// Isolation level 0..=4.
    pub isolation: u8,
    /// Orchestration level.
    pub orchestration: u8,
    /// Policy level.
    pub policy: u8,
    /// Year.
    pub year: u16,
    /// Architecture view, 1-based.
    pub architecture: u8,
    /// Scenario name.
    pub scenario: String,
    /// Observability, `+`-joined.
    pub observability: String,
}

/// A stack at a coordinate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinateEntry {
    /// Where.
    pub at: Spanned<Coordinate>,
    /// The stack as the seed names it.
    pub stack: String,
    /// Its components.
    pub components: Vec<Spanned<String>>,
    /// `kindling` when not from the seeds.
    #[serde(default)]
    pub source: Option<String>,
}

/// A scenario's coordinates over the years.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evolution {
    /// The scenario.
    pub scenario: String,
    /// Its coordinates, oldest first.
    pub steps: Vec<Spanned<Coordinate>>,
    /// What changed for users.
    #[serde(default)]
    pub effect: String,
}

/// A point on the technology timeline.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Milestone {
    /// When.
    pub year: u16,
    /// What.
    pub technology: String,
    /// What it changed.
    pub change: String,
}

impl KnowledgeBase {
    /// The knowledge base compiled into the binary.
    pub fn embedded() -> Self {
        Self::parse(EMBEDDED, "embedded knowledge base")
            .expect("the embedded knowledge base is valid")
    }

    /// The embedded knowledge base, parsed once per process.
    pub fn shared() -> &'static Self {
        static SHARED: std::sync::OnceLock<KnowledgeBase> = std::sync::OnceLock::new();
        SHARED.get_or_init(Self::embedded)
    }

    /// Reads and checks a knowledge base; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KbError> {
        let at = |offset: usize| crate::check::line_of(text, offset);
        let kb: Self = toml::from_str(text).map_err(|err| KbError {
            origin: origin.to_string(),
            problems: vec![Problem {
                line: err.span().map(|span| at(span.start)),
                message: err.message().to_string(),
            }],
        })?;
        let problems = kb.problems(text);
        if problems.is_empty() {
            Ok(kb)
        } else {
            Err(KbError {
                origin: origin.to_string(),
                problems,
            })
        }
    }

    /// The levels of `dimension`, if it exists.
    pub fn levels(&self, dimension: &str) -> Option<&[String]> {
        self.dimensions
            .get(dimension)
            .map(|d| d.levels.get_ref().as_slice())
    }

    /// Checks that `level` is a level of `dimension`, with a message naming the choices.
    pub fn check_answer(&self, dimension: &str, level: &str) -> Result<(), String> {
        match self.levels(dimension) {
            None => Err(format!(
                "unknown requirement {dimension:?}; known: {}",
                self.dimensions
                    .keys()
                    .map(|k| k.get_ref().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(levels) if !levels.iter().any(|l| l == level) => Err(format!(
                "{dimension} cannot be {level:?}; choose one of {}",
                levels.join(", ")
            )),
            Some(_) => Ok(()),
        }
    }

    /// A component's display name (its id when unknown); `a|b` is a choice, `A or B`.
    pub fn name(&self, id: &str) -> String {
        id.split('|')
            .map(|id| self.components.get(id).map_or(id, |c| c.name.as_str()))
            .collect::<Vec<_>>()
            .join(" or ")
    }

    /// Display names joined with ` + `.
    pub fn names<S: AsRef<str>>(&self, ids: &[S]) -> String {
        ids.iter()
            .map(|id| self.name(id.as_ref()))
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// A tree by name.
    pub fn tree(&self, name: &str) -> Option<&Tree> {
        self.trees.get(name)
    }

    /// Rank of an isolation level in the strength order (0 = strongest).
    pub fn strength_rank(&self, level: &str) -> Option<usize> {
        rank(self.isolation.strength.get_ref(), level)
    }

    /// Rank of an isolation level in the overhead order (0 = cheapest).
    pub fn overhead_rank(&self, level: &str) -> Option<usize> {
        rank(self.isolation.overhead.get_ref(), level)
    }
}

fn rank(order: &[Vec<String>], level: &str) -> Option<usize> {
    order
        .iter()
        .position(|group| group.iter().any(|l| l == level))
}
