//! Checking a knowledge base as a whole before anything uses it: every reference names
//! something that exists, every level is a level of its dimension, every tree's nodes are
//! reachable, acyclic and answer every level, the isolation orders list each level once and
//! coordinates are in range. Each problem is reported with the line it is on.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use crate::error::Problem;
use crate::kb::{Coordinate, KnowledgeBase, Node, Tree};

impl KnowledgeBase {
    /// Every problem in the knowledge base read from `text`, in file order.
    pub(crate) fn problems(&self, text: &str) -> Vec<Problem> {
        let mut check = Check {
            problems: Vec::new(),
            text,
        };
        self.check(&mut check);
        check.problems.sort_by_key(|p| p.line);
        check.problems
    }

    fn check(&self, check: &mut Check<'_>) {
        for (name, dimension) in &self.dimensions {
            let levels = dimension.levels.get_ref();
            if levels.is_empty() {
                check.at(
                    &dimension.levels,
                    format!("dimension {:?} has no levels", name.get_ref()),
                );
            }
            let unique: BTreeSet<_> = levels.iter().collect();
            if unique.len() != levels.len() {
                check.at(
                    &dimension.levels,
                    format!("dimension {:?} lists a level twice", name.get_ref()),
                );
            }
        }
        let isolation_levels: BTreeSet<&str> = self
            .isolation
            .levels
            .iter()
            .map(|l| l.level.as_str())
            .collect();
        for (id, component) in &self.components {
            if let Some(level) = &component.isolation
                && !isolation_levels.contains(level.get_ref().as_str())
            {
                check.at(
                    level,
                    format!(
                        "component {:?}: unknown isolation level {:?}",
                        id.get_ref(),
                        level.get_ref()
                    ),
                );
            }
            for (dimension, level) in &component.meets {
                self.check_level(check, dimension, level);
            }
        }
        for rule in &self.rules {
            self.check_level(check, &rule.dimension, &rule.level);
            self.check_components(check, &rule.recommend);
        }
        for row in &self.runtime_matrix {
            if !self.trees.contains_key(row.scenario.get_ref().as_str()) {
                check.at(
                    &row.scenario,
                    format!(
                        "matrix scenario {:?} has no decision tree",
                        row.scenario.get_ref()
                    ),
                );
            }
            for (dimension, level) in &row.requirements {
                self.check_level(check, dimension, level);
            }
            self.check_components(check, &row.recommend);
        }
        for row in &self.storage_matrix {
            if self
                .check_answer("storage", row.workload.get_ref())
                .is_err()
            {
                check.at(
                    &row.workload,
                    format!(
                        "storage workload {:?} is not a level of \"storage\"",
                        row.workload.get_ref()
                    ),
                );
            }
            for (dimension, level) in &row.requirements {
                self.check_level(check, dimension, level);
            }
            self.check_components(check, &row.recommend);
        }
        if !self.trees.contains_key("general") {
            check.problems.push(Problem {
                line: None,
                message: "there is no \"general\" tree, the one used without a scenario".into(),
            });
        }
        for (name, tree) in &self.trees {
            self.check_tree(check, name.get_ref(), tree);
        }
        self.check_isolation(check, &isolation_levels);
        for entry in &self.coordinates {
            self.check_coordinate(check, &entry.at);
            self.check_components(check, &entry.components);
        }
        for evolution in &self.evolution {
            for step in &evolution.steps {
                self.check_coordinate(check, step);
            }
        }
    }

    fn check_level(
        &self,
        check: &mut Check<'_>,
        dimension: &Spanned<String>,
        level: &Spanned<String>,
    ) {
        match self.levels(dimension.get_ref()) {
            None => check.at(
                dimension,
                format!("unknown dimension {:?}", dimension.get_ref()),
            ),
            Some(levels) if !levels.contains(level.get_ref()) => check.at(
                level,
                format!(
                    "{:?} is not a level of {:?} (levels: {})",
                    level.get_ref(),
                    dimension.get_ref(),
                    levels.join(", ")
                ),
            ),
            Some(_) => {}
        }
    }

    fn check_components(&self, check: &mut Check<'_>, ids: &[Spanned<String>]) {
        for id in ids {
            for part in id.get_ref().split('|') {
                if !self.components.contains_key(part) {
                    check.at(id, format!("unknown component {part:?}"));
                }
            }
        }
    }

    fn check_tree(&self, check: &mut Check<'_>, name: &str, tree: &Tree) {
        let mut nodes: BTreeMap<&str, &Node> = BTreeMap::new();
        for node in &tree.nodes {
            if nodes.insert(node.id.get_ref(), node).is_some() {
                check.at(
                    &node.id,
                    format!(
                        "tree {name:?}: node {:?} is defined twice",
                        node.id.get_ref()
                    ),
                );
            }
        }
        if tree.roots.is_empty() {
            check.problems.push(Problem {
                line: None,
                message: format!("tree {name:?} has no roots"),
            });
        }
        for root in &tree.roots {
            if !nodes.contains_key(root.get_ref().as_str()) {
                check.at(
                    root,
                    format!("tree {name:?}: root {:?} is not a node", root.get_ref()),
                );
            }
        }
        for ids in tree.summary.values() {
            self.check_components(check, ids);
        }
        for node in &tree.nodes {
            let dimension = node.ask.get_ref();
            let Some(levels) = self.levels(dimension) else {
                check.at(
                    &node.ask,
                    format!(
                        "tree {name:?}: node {:?} asks about unknown dimension {dimension:?}",
                        node.id.get_ref()
                    ),
                );
                continue;
            };
            if let Some(default) = &node.default {
                self.check_level(check, &node.ask, default);
            }
            self.check_components(check, &node.stack);
            let mut covered: BTreeSet<&str> = BTreeSet::new();
            for branch in &node.branches {
                for when in &branch.when {
                    self.check_level(check, &node.ask, when);
                    if !covered.insert(when.get_ref()) {
                        check.at(
                            when,
                            format!(
                                "tree {name:?}: node {:?} has two branches for {:?}",
                                node.id.get_ref(),
                                when.get_ref()
                            ),
                        );
                    }
                }
                match (&branch.next, branch.recommend.is_empty()) {
                    (Some(next), true) => {
                        if !nodes.contains_key(next.get_ref().as_str()) {
                            check.at(next, format!("tree {name:?}: branch leads to unknown node {:?}", next.get_ref()));
                        }
                    }
                    (None, false) => self.check_components(check, &branch.recommend),
                    (Some(next), false) => check.at(next, format!("tree {name:?}: a branch of node {:?} has both `next` and `recommend`; keep one", node.id.get_ref())),
                    (None, true) => check.at(&node.id, format!("tree {name:?}: a branch of node {:?} has neither `next` nor `recommend`", node.id.get_ref())),
                }
            }
            let missing: Vec<&str> = levels
                .iter()
                .map(String::as_str)
                .filter(|l| !covered.contains(l))
                .collect();
            if !missing.is_empty() {
                check.at(
                    &node.id,
                    format!(
                        "tree {name:?}: node {:?} has no branch for {} {}",
                        node.id.get_ref(),
                        dimension,
                        missing.join(", ")
                    ),
                );
            }
        }
        // Reachability and cycles, by depth-first search from the roots.
        let mut reached: BTreeSet<&str> = BTreeSet::new();
        for root in &tree.roots {
            let mut path = Vec::new();
            visit(check, name, &nodes, root.get_ref(), &mut path, &mut reached);
        }
        for node in &tree.nodes {
            if !reached.contains(node.id.get_ref().as_str()) {
                check.at(
                    &node.id,
                    format!(
                        "tree {name:?}: node {:?} cannot be reached from a root",
                        node.id.get_ref()
                    ),
                );
            }
        }
    }

    fn check_isolation(&self, check: &mut Check<'_>, levels: &BTreeSet<&str>) {
        for (what, order) in [
            ("strength", &self.isolation.strength),
            ("overhead", &self.isolation.overhead),
        ] {
            let listed: Vec<&str> = order
                .get_ref()
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            let unique: BTreeSet<&str> = listed.iter().copied().collect();
            if unique.len() != listed.len() || &unique != levels {
                check.at(
                    order,
                    format!(
                        "the isolation {what} order must list each of {} exactly once",
                        levels.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }

    fn check_coordinate(&self, check: &mut Check<'_>, at: &Spanned<Coordinate>) {
        let c = at.get_ref();
        let scales = &self.coordinate_scales;
        if usize::from(c.isolation) >= self.isolation.levels.len() {
            check.at(
                at,
                format!(
                    "isolation {} is out of range 0-{}",
                    c.isolation,
                    self.isolation.levels.len() - 1
                ),
            );
        }
        if usize::from(c.orchestration) >= scales.orchestration.len() {
            check.at(
                at,
                format!(
                    "orchestration {} is out of range 0-{}",
                    c.orchestration,
                    scales.orchestration.len() - 1
                ),
            );
        }
        if usize::from(c.policy) >= scales.policy.len() {
            check.at(
                at,
                format!(
                    "policy {} is out of range 0-{}",
                    c.policy,
                    scales.policy.len() - 1
                ),
            );
        }
        if c.architecture == 0 || usize::from(c.architecture) > scales.architecture.len() {
            check.at(
                at,
                format!(
                    "architecture {} is out of range 1-{}",
                    c.architecture,
                    scales.architecture.len()
                ),
            );
        }
    }
}

fn visit<'a>(
    check: &mut Check<'_>,
    tree: &str,
    nodes: &BTreeMap<&'a str, &'a Node>,
    id: &'a str,
    path: &mut Vec<&'a str>,
    reached: &mut BTreeSet<&'a str>,
) {
    let Some(node) = nodes.get(id) else { return };
    path.push(id);
    reached.insert(id);
    for branch in &node.branches {
        let Some(next) = &branch.next else { continue };
        let next_id = next.get_ref().as_str();
        if path.contains(&next_id) {
            check.at(
                next,
                format!("tree {tree:?}: a cycle: {} -> {next_id}", path.join(" -> ")),
            );
        } else if !reached.contains(next_id) {
            visit(check, tree, nodes, next_id, path, reached);
        }
    }
    path.pop();
}

/// The 1-based line holding byte `offset` of `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

struct Check<'t> {
    problems: Vec<Problem>,
    text: &'t str,
}

impl Check<'_> {
    fn at<T>(&mut self, spanned: &Spanned<T>, message: String) {
        self.problems.push(Problem {
            line: Some(line_of(self.text, spanned.span().start)),
            message,
        });
    }
}
