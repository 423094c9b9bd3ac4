//! Errors at the crate's boundary: a knowledge base that does not load, and a question the
//! knowledge base cannot answer.

use std::fmt;

/// A knowledge base that failed to parse or check: every problem found, each with its line.
#[derive(Debug, thiserror::Error)]
pub struct KbError {
    /// The file (or `embedded knowledge base`).
    pub origin: String,
    /// What is wrong, in file order.
    pub problems: Vec<Problem>,
}

/// One thing wrong with a knowledge base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for KbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "knowledge base {:?} is invalid ({count} problem{})",
            self.origin,
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            match problem.line {
                Some(line) => write!(f, "\n  line {line}: {}", problem.message)?,
                None => write!(f, "\n  {}", problem.message)?,
            }
        }
        Ok(())
    }
}

/// A question the knowledge base cannot answer as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdviceError {
    /// No tree for this scenario.
    #[error("unknown scenario {name:?}; known: {known}")]
    UnknownScenario {
        /// What was asked.
        name: String,
        /// The scenarios there are.
        known: String,
    },
    /// An answer that is not a level of its dimension, or an unknown dimension.
    #[error("{0}")]
    BadAnswer(String),
    /// A coordinate that does not parse.
    #[error("bad coordinate {input:?}: {reason}")]
    BadCoordinate {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No evolution path for this scenario.
    #[error("no evolution path for {name:?}; known: {known}")]
    UnknownEvolution {
        /// What was asked.
        name: String,
        /// The scenarios with a path.
        known: String,
    },
}
