//! Broken knowledge bases, each refused with the line of the problem.

use kindling_advisor::{EMBEDDED, KnowledgeBase};

use crate::kb;

/// The embedded file with `from` replaced by `to`, and the line `to` lands on.
fn broken(from: &str, to: &str) -> (String, usize) {
    assert!(EMBEDDED.contains(from), "{from}");
    let text = EMBEDDED.replacen(from, to, 1);
    let line = text[..text.find(to).unwrap()].matches('\n').count() + 1;
    (text, line)
}

#[test]
fn broken_knowledge_bases_name_the_line_and_the_problem() {
    let cases = [
        (
            "recommend = [\"kubevirt\", \"dpu\"]",
            "recommend = [\"kubevirt\", \"tpu\"]",
            "unknown component \"tpu\"",
        ),
        (
            "{ when = [\"ultra-low\"], next = \"security\", reason = \"ultra-low start-up: sandbox",
            "{ when = [\"ultra-low\"], next = \"securty\", reason = \"ultra-low start-up: sandbox",
            "branch leads to unknown node \"securty\"",
        ),
        (
            "ask = \"resources\"",
            "ask = \"resource\"",
            "asks about unknown dimension \"resource\"",
        ),
        (
            "{ when = [\"ample\"], recommend = [\"k3s\"]",
            "{ when = [\"plenty\"], recommend = [\"k3s\"]",
            "\"plenty\" is not a level of \"resources\"",
        ),
        (
            "requirements = { security = \"low\", performance = \"medium\", startup = \"low\" }",
            "requirements = { security = \"lowest\", performance = \"medium\", startup = \"low\" }",
            "\"lowest\" is not a level of \"security\"",
        ),
        (
            "strength = [[\"L-0\", \"L-4\"], [\"L-1\"], [\"L-2\"], [\"L-3\"]]",
            "strength = [[\"L-0\", \"L-4\"], [\"L-1\"], [\"L-2\"]]",
            "isolation strength order must list each of",
        ),
        (
            "levels = [\"low\", \"medium\", \"high\", \"ultra-high\"]\n\n[dimensions.performance]",
            "levels = [\"low\", \"medium\", \"high\", \"ultra-high\"\n\n[dimensions.performance]",
            "",
        ),
    ];
    for (from, to, message) in cases {
        let (text, line) = broken(from, to);
        let err = KnowledgeBase::parse(&text, "kb.toml").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with("knowledge base \"kb.toml\" is invalid"),
            "{shown}"
        );
        let problem = err
            .problems
            .iter()
            .find(|p| p.message.contains(message))
            .unwrap_or_else(|| panic!("{message:?} in {shown}"));
        let reported = problem.line.unwrap();
        // A syntax error is found where the parser gives up, at most a few lines on.
        assert!(
            reported == line || (message.is_empty() && (line..line + 4).contains(&reported)),
            "{message:?}: line {reported}, expected {line}: {shown}"
        );
    }
}

#[test]
fn unreachable_nodes_cycles_and_gaps_are_refused() {
    // An unreachable node: the edge tree's root skips `resources`.
    let (text, _) = broken(
        "{ when = [\"yes\"], next = \"resources\", reason = \"lightweight: K3s + WasmEdge\" }",
        "{ when = [\"yes\"], recommend = [\"k3s\"], reason = \"lightweight: K3s + WasmEdge\" }",
    );
    let line = EMBEDDED[..EMBEDDED.find("id = \"resources\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let err = KnowledgeBase::parse(&text, "kb.toml").unwrap_err();
    let problem = err
        .problems
        .iter()
        .find(|p| p.message.contains("cannot be reached"))
        .unwrap();
    assert_eq!(problem.line, Some(line), "{err}");

    // A cycle: the finance performance node leads back to security.
    let (text, line) = broken(
        "{ when = [\"low\", \"medium\"], recommend = [\"kubevirt\", \"standard-config\"], reason",
        "{ when = [\"low\", \"medium\"], next = \"security\", reason",
    );
    let err = KnowledgeBase::parse(&text, "kb.toml").unwrap_err();
    let problem = err
        .problems
        .iter()
        .find(|p| p.message.contains("a cycle"))
        .unwrap();
    assert_eq!(problem.line, Some(line), "{err}");
    assert!(
        problem
            .message
            .contains("security -> performance -> security"),
        "{err}"
    );

    // A gap: no branch for medium start-up.
    let (text, _) = broken(
        "{ when = [\"low\", \"medium\", \"relaxed\"], next = \"security\"",
        "{ when = [\"low\", \"relaxed\"], next = \"security\"",
    );
    let err = KnowledgeBase::parse(&text, "kb.toml").unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.message.contains("has no branch for startup medium")),
        "{err}"
    );
    // Unknown fields are refused by name.
    let (text, _) = broken(
        "[components.kubevirt]\nname",
        "[components.kubevirt]\ncolour = \"red\"\nname",
    );
    let err = KnowledgeBase::parse(&text, "kb.toml").unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn the_embedded_knowledge_base_loads() {
    let kb = kb();
    assert_eq!(kb.scenarios().len(), 7);
    assert!(kb.tree("general").is_some());
}
