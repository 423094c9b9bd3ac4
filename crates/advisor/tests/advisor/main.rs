//! The advisor against the seeds: every leaf of the seven scenario trees, both decision
//! matrices, the requirement analysis, the isolation orders and the coordinates, table-driven;
//! walks with given, assumed and asked answers; functions judged against the sandbox; and broken
//! knowledge bases, each refused with the line of the problem.

mod broken;
mod function;
mod map;
mod trees;
mod walks;

use kindling_advisor::{Advice, Answers, KnowledgeBase, Outcome};

pub(crate) fn kb() -> KnowledgeBase {
    KnowledgeBase::embedded()
}

pub(crate) fn answers(pairs: &[(&str, &str)]) -> Answers {
    pairs
        .iter()
        .map(|(d, l)| (d.to_string(), l.to_string()))
        .collect()
}

/// The recommendation of each part (runtime, storage), as component ids.
pub(crate) fn outcomes(advice: &Advice) -> Vec<Vec<String>> {
    advice
        .parts
        .iter()
        .map(|part| match &part.outcome {
            Outcome::Recommend { components, .. } => components.clone(),
            Outcome::Open { dimension, .. } => vec![format!("open: {dimension}")],
        })
        .collect()
}

pub(crate) fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
