//! Walking a decision tree: each node's answer comes from what the user gave, from an
//! interactive question, from the scenario's row in the decision matrix, or from the node's
//! default, in that order, and the walk records every step with its reason and the branches
//! not taken (with what they would have needed).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::AdviceError;
use crate::kb::{Branch, KnowledgeBase, Node, Tree};

/// Requirement answers by dimension.
pub type Answers = BTreeMap<String, String>;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Given on the command line (or declared by the function).
    Given,
    /// Answered at the interactive prompt.
    Asked,
    /// The scenario's row in the decision matrix.
    Scenario,
    /// The node's default.
    Assumed,
}

/// Asks the user a node's question; `None` keeps the suggestion.
pub trait Prompt {
    /// Asks `question`, offering `levels` and suggesting `suggestion`.
    fn ask(
        &mut self,
        dimension: &str,
        question: &str,
        levels: &[String],
        suggestion: Option<&str>,
    ) -> Option<String>;
}

/// The advice of one tree.
#[derive(Debug, Serialize)]
pub struct Advice {
    /// The tree's name (`general` or a scenario).
    pub tree: String,
    /// Its title.
    pub title: String,
    /// One walk per root: runtime first, then storage.
    pub parts: Vec<Part>,
    /// The seed's overall recommendation for the scenario, by part.
    pub summary: BTreeMap<String, Vec<String>>,
    /// Requirement analysis: what each given level calls for on its own.
    pub analysis: Vec<Analysis>,
    /// Matrix rows nearest to the requirements, nearest first.
    pub nearest_scenarios: Vec<Nearest>,
}

/// One walk from a root.
#[derive(Debug, Serialize)]
pub struct Part {
    /// The root node.
    pub root: String,
    /// The questions answered on the way.
    pub steps: Vec<Step>,
    /// Where the walk ended.
    pub outcome: Outcome,
}

/// A question on the path.
#[derive(Debug, Serialize)]
pub struct Step {
    /// Node id.
    pub node: String,
    /// The dimension asked about.
    pub dimension: String,
    /// The question.
    pub question: String,
    /// The answer and where it came from; `None` when there was no answer.
    pub answer: Option<(String, Origin)>,
    /// The choice made by reaching this node, if the tree names one.
    pub stack: Vec<String>,
    /// Why the taken branch was taken.
    pub reason: Option<String>,
    /// Branches not taken, each with the recommendations under it.
    pub not_taken: Vec<Alternative>,
}

/// A branch not taken.
#[derive(Debug, Serialize)]
pub struct Alternative {
    /// The answers that would take it.
    pub when: Vec<String>,
    /// The recommendations reachable through it.
    pub leads_to: Vec<Vec<String>>,
    /// Its reason.
    pub reason: String,
}

/// How a walk ended.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// A recommendation.
    Recommend {
        /// Component ids.
        components: Vec<String>,
        /// Why.
        reason: String,
        /// `kindling` where the seeds did not draw this branch.
        source: Option<String>,
    },
    /// A question without an answer: the options there are.
    Open {
        /// The dimension left open.
        dimension: String,
        /// Each option with where it leads.
        options: Vec<Alternative>,
    },
}

/// What one given requirement level calls for on its own.
#[derive(Debug, Serialize)]
pub struct Analysis {
    /// The dimension.
    pub dimension: String,
    /// The level.
    pub level: String,
    /// Components that suit it.
    pub recommend: Vec<String>,
    /// Why.
    pub reason: String,
}

/// A matrix row and how far it is from the requirements.
#[derive(Debug, Serialize)]
pub struct Nearest {
    /// The scenario.
    pub scenario: String,
    /// Sum of level differences over the dimensions given.
    pub distance: usize,
    /// The dimensions that differ: (dimension, row's level, given level).
    pub differs: Vec<(String, String, String)>,
    /// The row's recommendation.
    pub recommend: Vec<String>,
}

impl KnowledgeBase {
    /// Checks answers against the dimensions.
    pub fn check_answers(&self, answers: &Answers) -> Result<(), AdviceError> {
        for (dimension, level) in answers {
            self.check_answer(dimension, level)
                .map_err(AdviceError::BadAnswer)?;
        }
        Ok(())
    }

    /// Names of the scenario trees (all but `general`).
    pub fn scenarios(&self) -> Vec<&str> {
        self.trees
            .keys()
            .map(|k| k.get_ref().as_str())
            .filter(|k| *k != "general")
            .collect()
    }

    /// Walks the tree for `scenario` (or `general`) with `answers`, asking `prompt` for the
    /// rest when there is one.
    pub fn advise(
        &self,
        scenario: Option<&str>,
        answers: &Answers,
        mut prompt: Option<&mut dyn Prompt>,
    ) -> Result<Advice, AdviceError> {
        self.check_answers(answers)?;
        let name = scenario.unwrap_or("general");
        let tree = self
            .tree(name)
            .ok_or_else(|| AdviceError::UnknownScenario {
                name: name.to_string(),
                known: self.scenarios().join(", "),
            })?;
        let row: Answers = self
            .runtime_matrix
            .iter()
            .find(|row| row.scenario.get_ref() == name)
            .map(|row| {
                row.requirements
                    .iter()
                    .map(|(d, l)| (d.get_ref().clone(), l.get_ref().clone()))
                    .collect()
            })
            .unwrap_or_default();
        // Answers found on the way, so that a question asked once is not asked again.
        let mut known: BTreeMap<String, (String, Origin)> = answers
            .iter()
            .map(|(d, l)| (d.clone(), (l.clone(), Origin::Given)))
            .collect();
        let mut parts = Vec::new();
        for root in &tree.roots {
            parts.push(self.walk(tree, root.get_ref(), &row, &mut known, &mut prompt));
        }
        let analysis = self
            .rules
            .iter()
            .filter(|rule| {
                answers.get(rule.dimension.get_ref()).map(String::as_str)
                    == Some(rule.level.get_ref().as_str())
            })
            .map(|rule| Analysis {
                dimension: rule.dimension.get_ref().clone(),
                level: rule.level.get_ref().clone(),
                recommend: ids(&rule.recommend),
                reason: rule.reason.clone(),
            })
            .collect();
        let given: Answers = known
            .iter()
            .filter(|(_, (_, origin))| matches!(origin, Origin::Given | Origin::Asked))
            .map(|(d, (l, _))| (d.clone(), l.clone()))
            .collect();
        Ok(Advice {
            tree: name.to_string(),
            title: tree.title.clone(),
            parts,
            summary: tree
                .summary
                .iter()
                .map(|(part, list)| (part.clone(), ids(list)))
                .collect(),
            analysis,
            nearest_scenarios: self.nearest_scenarios(&given),
        })
    }

    /// Matrix rows ordered by distance to `answers` over the dimensions both mention.
    pub fn nearest_scenarios(&self, answers: &Answers) -> Vec<Nearest> {
        let mut rows: Vec<Nearest> = self
            .runtime_matrix
            .iter()
            .filter_map(|row| {
                let mut distance = 0;
                let mut differs = Vec::new();
                let mut compared = false;
                for (dimension, level) in &row.requirements {
                    let Some(given) = answers.get(dimension.get_ref()) else {
                        continue;
                    };
                    compared = true;
                    let levels = self.levels(dimension.get_ref())?;
                    let a = levels.iter().position(|l| l == level.get_ref())?;
                    let b = levels.iter().position(|l| l == given)?;
                    if a != b {
                        distance += a.abs_diff(b);
                        differs.push((
                            dimension.get_ref().clone(),
                            level.get_ref().clone(),
                            given.clone(),
                        ));
                    }
                }
                compared.then(|| Nearest {
                    scenario: row.scenario.get_ref().clone(),
                    distance,
                    differs,
                    recommend: ids(&row.recommend),
                })
            })
            .collect();
        rows.sort_by_key(|row| row.distance);
        rows
    }

    fn walk(
        &self,
        tree: &Tree,
        root: &str,
        row: &Answers,
        known: &mut BTreeMap<String, (String, Origin)>,
        prompt: &mut Option<&mut dyn Prompt>,
    ) -> Part {
        let mut steps = Vec::new();
        let mut id = root;
        // Checked on load: every `next` names a node and there are no cycles.
        loop {
            let node = node(tree, id);
            let dimension = node.ask.get_ref();
            let question = self
                .dimensions
                .get(dimension.as_str())
                .map_or_else(String::new, |d| d.question.clone());
            let answer = self.answer(node, row, known, prompt);
            let Some((level, origin)) = answer else {
                let options = node
                    .branches
                    .iter()
                    .map(|branch| self.alternative(tree, branch))
                    .collect();
                steps.push(Step {
                    node: id.to_string(),
                    dimension: dimension.clone(),
                    question,
                    answer: None,
                    stack: ids(&node.stack),
                    reason: None,
                    not_taken: Vec::new(),
                });
                return Part {
                    root: root.to_string(),
                    steps,
                    outcome: Outcome::Open {
                        dimension: dimension.clone(),
                        options,
                    },
                };
            };
            known.insert(dimension.clone(), (level.clone(), origin));
            let taken = node
                .branches
                .iter()
                .find(|b| b.when.iter().any(|w| w.get_ref() == &level))
                .expect("checked on load: the branches cover every level");
            let not_taken = node
                .branches
                .iter()
                .filter(|b| !std::ptr::eq(*b, taken))
                .map(|branch| self.alternative(tree, branch))
                .collect();
            steps.push(Step {
                node: id.to_string(),
                dimension: dimension.clone(),
                question,
                answer: Some((level, origin)),
                stack: ids(&node.stack),
                reason: Some(taken.reason.clone()),
                not_taken,
            });
            match &taken.next {
                Some(next) => id = next.get_ref(),
                None => {
                    return Part {
                        root: root.to_string(),
                        steps,
                        outcome: Outcome::Recommend {
                            components: ids(&taken.recommend),
                            reason: taken.reason.clone(),
                            source: taken.source.clone().or_else(|| node.source.clone()),
                        },
                    };
                }
            }
        }
    }

    fn answer(
        &self,
        node: &Node,
        row: &Answers,
        known: &BTreeMap<String, (String, Origin)>,
        prompt: &mut Option<&mut dyn Prompt>,
    ) -> Option<(String, Origin)> {
        let dimension = node.ask.get_ref();
        if let Some(answer) = known.get(dimension) {
            return Some(answer.clone());
        }
        let fallback = row
            .get(dimension)
            .map(|l| (l.clone(), Origin::Scenario))
            .or_else(|| {
                node.default
                    .as_ref()
                    .map(|d| (d.get_ref().clone(), Origin::Assumed))
            });
        if let Some(prompt) = prompt {
            let levels = self.levels(dimension).unwrap_or_default();
            let question = self
                .dimensions
                .get(dimension.as_str())
                .map_or("", |d| d.question.as_str());
            let suggestion = fallback.as_ref().map(|(l, _)| l.as_str());
            if let Some(level) = prompt.ask(dimension, question, levels, suggestion) {
                return Some((level, Origin::Asked));
            }
        }
        fallback
    }

    fn alternative(&self, tree: &Tree, branch: &Branch) -> Alternative {
        let mut leads_to = Vec::new();
        leaves(tree, branch, &mut leads_to);
        Alternative {
            when: ids(&branch.when),
            leads_to,
            reason: branch.reason.clone(),
        }
    }
}

fn node<'t>(tree: &'t Tree, id: &str) -> &'t Node {
    tree.nodes
        .iter()
        .find(|n| n.id.get_ref() == id)
        .expect("checked on load: every reference names a node")
}

/// The recommendations reachable through `branch`, without repeats.
fn leaves(tree: &Tree, branch: &Branch, out: &mut Vec<Vec<String>>) {
    match &branch.next {
        None => {
            let leaf = ids(&branch.recommend);
            if !out.contains(&leaf) {
                out.push(leaf);
            }
        }
        Some(next) => {
            for branch in &node(tree, next.get_ref()).branches {
                leaves(tree, branch, out);
            }
        }
    }
}

pub(crate) fn ids(list: &[toml::Spanned<String>]) -> Vec<String> {
    list.iter().map(|s| s.get_ref().clone()).collect()
}
