//! Kindling's architecture advisor: the technology-selection decision trees, decision matrices,
//! isolation levels and technology coordinates of the project's seed documents, as a checked
//! knowledge base (TOML, embedded, replaceable) and the code that walks it. `kindling advise`
//! is its command line.

mod advise;
mod check;
mod coordinates;
mod error;
mod function;
mod kb;
mod render;

pub use advise::{
    Advice, Alternative, Analysis, Answers, Nearest, Origin, Outcome, Part, Prompt, Step,
};
pub use coordinates::{EvolutionPath, EvolutionStep, Match};
pub use error::{AdviceError, KbError, Problem};
pub use function::{FunctionProfile, FunctionVerdict, RequirementCheck};
pub use kb::{Coordinate, EMBEDDED, KnowledgeBase};
