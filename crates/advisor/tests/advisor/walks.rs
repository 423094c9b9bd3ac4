//! Walking the trees: requirements without a scenario, assumed and open answers, bad answers,
//! and the interactive prompt.

use kindling_advisor::{Answers, Origin, Outcome, Prompt};

use crate::{answers, ids, kb, outcomes};

#[test]
fn general_advice_walks_requirements_and_names_what_lost() {
    let kb = kb();
    let advice = kb
        .advise(
            None,
            &answers(&[("security", "high"), ("startup", "ultra-low")]),
            None,
        )
        .unwrap();
    assert_eq!(outcomes(&advice)[0], ids(&["kindling|wasmedge"]));
    // The plugin row of the matrix has exactly these requirements.
    assert_eq!(advice.nearest_scenarios[0].scenario, "plugins");
    assert_eq!(advice.nearest_scenarios[0].distance, 0);
    // The second question's losing branch is Firecracker, which needs ultra-high security.
    let step = &advice.parts[0].steps[1];
    assert_eq!(step.not_taken.len(), 1);
    assert_eq!(step.not_taken[0].when, ids(&["ultra-high"]));
    assert_eq!(step.not_taken[0].leads_to, vec![ids(&["firecracker"])]);
    // The first question's losing branch lists every leaf under it.
    let first = &advice.parts[0].steps[0].not_taken[0];
    assert!(first.leads_to.contains(&ids(&["kubevirt"])));
    assert!(first.leads_to.contains(&ids(&["kata", "kubernetes"])));
    let text = kb.advice_text(&advice);
    assert!(
        text.contains("=> Kindling (Wasmtime) or WasmEdge"),
        "{text}"
    );
    assert!(
        text.contains("if security were ultra-high: Firecracker"),
        "{text}"
    );

    // Mixed needs (high security, start-up in seconds): Kata Containers (section 4.3).
    let mixed = kb
        .advise(
            None,
            &answers(&[("security", "high"), ("startup", "medium")]),
            None,
        )
        .unwrap();
    assert_eq!(outcomes(&mixed)[0], ids(&["kata", "kubernetes"]));
    // Unanswered questions take the node's default and say so.
    let assumed = kb
        .advise(None, &answers(&[("security", "low")]), None)
        .unwrap();
    assert_eq!(
        assumed.parts[0].steps[0].answer,
        Some(("medium".to_string(), Origin::Assumed))
    );
}

#[test]
fn a_question_without_answer_or_default_lists_the_options() {
    let advice = kb()
        .advise(Some("serverless"), &Answers::new(), None)
        .unwrap();
    let Outcome::Open { dimension, options } = &advice.parts[1].outcome else {
        panic!("storage depends on state: {:?}", advice.parts[1].outcome);
    };
    assert_eq!(dimension, "state");
    assert_eq!(options.len(), 2);
}

#[test]
fn bad_answers_and_scenarios_are_refused_with_the_choices() {
    let kb = kb();
    let err = kb
        .advise(None, &answers(&[("security", "extreme")]), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("security cannot be \"extreme\"") && err.contains("ultra-high"),
        "{err}"
    );
    let err = kb
        .advise(None, &answers(&[("colour", "red")]), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown requirement \"colour\""), "{err}");
    let err = kb
        .advise(Some("banking"), &Answers::new(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown scenario \"banking\"") && err.contains("finance"),
        "{err}"
    );
}

struct Scripted(Vec<(&'static str, Option<&'static str>)>, Vec<String>);

impl Prompt for Scripted {
    fn ask(
        &mut self,
        dimension: &str,
        _: &str,
        _: &[String],
        suggestion: Option<&str>,
    ) -> Option<String> {
        self.1
            .push(format!("{dimension}:{}", suggestion.unwrap_or("-")));
        let (expected, answer) = self.0.remove(0);
        assert_eq!(expected, dimension);
        answer.map(str::to_string)
    }
}

#[test]
fn interactive_mode_asks_only_what_was_not_given() {
    let kb = kb();
    let mut prompt = Scripted(
        vec![("security", Some("high")), ("plugin-data", None)],
        Vec::new(),
    );
    let advice = kb
        .advise(
            Some("plugins"),
            &answers(&[("startup", "ultra-low")]),
            Some(&mut prompt),
        )
        .unwrap();
    // The matrix row's level is offered as the suggestion; an empty answer keeps it, and a
    // question without suggestion stays open.
    assert_eq!(prompt.1, vec!["security:high", "plugin-data:-"]);
    assert_eq!(outcomes(&advice)[0], ids(&["wasmedge"]));
    assert!(matches!(advice.parts[1].outcome, Outcome::Open { .. }));
    assert_eq!(
        advice.parts[0].steps[0].answer,
        Some(("high".to_string(), Origin::Asked))
    );
}
