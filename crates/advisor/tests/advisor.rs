//! The advisor against the seeds: every leaf of the seven scenario trees, both decision
//! matrices, the requirement analysis, the isolation orders and the coordinates, table-driven;
//! and broken knowledge bases, each refused with the line of the problem.

use kindling_advisor::{
    Advice, Answers, Coordinate, EMBEDDED, FunctionProfile, KnowledgeBase, Origin, Outcome, Prompt,
};

fn kb() -> KnowledgeBase {
    KnowledgeBase::embedded()
}

fn answers(pairs: &[(&str, &str)]) -> Answers {
    pairs
        .iter()
        .map(|(d, l)| (d.to_string(), l.to_string()))
        .collect()
}

/// The recommendation of each part (runtime, storage), as component ids.
fn outcomes(advice: &Advice) -> Vec<Vec<String>> {
    advice
        .parts
        .iter()
        .map(|part| match &part.outcome {
            Outcome::Recommend { components, .. } => components.clone(),
            Outcome::Open { dimension, .. } => vec![format!("open: {dimension}")],
        })
        .collect()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A scenario, the answers given, and the runtime and storage leaves they reach.
type Leaf<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [&'a str],
    &'a [&'a str],
);

#[test]
fn every_leaf_of_the_seven_scenario_trees() {
    // (scenario, answers, runtime leaf, storage leaf), from seed 004 section 5.
    let table: &[Leaf] = &[
        // 5.1 finance
        (
            "finance",
            &[
                ("security", "ultra-high"),
                ("performance", "high"),
                ("storage", "oltp"),
            ],
            &["kubevirt", "dpu"],
            &["ceph-rbd-nvme"],
        ),
        (
            "finance",
            &[
                ("security", "ultra-high"),
                ("performance", "medium"),
                ("storage", "configuration"),
            ],
            &["kubevirt", "standard-config"],
            &["etcd"],
        ),
        // 5.2 microservices
        (
            "microservices",
            &[
                ("security", "medium"),
                ("iteration", "fast"),
                ("state", "stateful"),
            ],
            &["docker", "kubernetes", "helm"],
            &["ceph-rbd-nvme"],
        ),
        (
            "microservices",
            &[
                ("security", "medium"),
                ("iteration", "medium"),
                ("performance", "high"),
                ("state", "stateless"),
            ],
            &["kubernetes", "dpu"],
            &["emptydir"],
        ),
        // 5.3 serverless
        (
            "serverless",
            &[
                ("startup", "ultra-low"),
                ("security", "high"),
                ("state", "stateful"),
            ],
            &["wasmedge"],
            &["s3"],
        ),
        (
            "serverless",
            &[
                ("startup", "ultra-low"),
                ("security", "medium"),
                ("state", "stateless"),
            ],
            &["firecracker"],
            &["emptydir"],
        ),
        // 5.4 edge
        (
            "edge",
            &[
                ("lightweight", "yes"),
                ("resources", "constrained"),
                ("edge-data", "local"),
            ],
            &["wasmedge"],
            &["local-pv"],
        ),
        (
            "edge",
            &[
                ("lightweight", "yes"),
                ("resources", "ample"),
                ("edge-data", "cloud-sync"),
            ],
            &["k3s"],
            &["s3"],
        ),
        // 5.5 multi-tenant cloud
        (
            "multi-tenant",
            &[
                ("security", "ultra-high"),
                ("kubernetes", "yes"),
                ("storage", "oltp"),
            ],
            &["kubevirt"],
            &["ceph-rbd-nvme"],
        ),
        (
            "multi-tenant",
            &[
                ("security", "ultra-high"),
                ("kubernetes", "no"),
                ("storage", "mass-files"),
            ],
            &["qemu-kvm"],
            &["cephfs|glusterfs"],
        ),
        // 5.6 CI/CD
        (
            "ci-cd",
            &[
                ("security", "low"),
                ("deployment", "cluster"),
                ("build-data", "cache"),
            ],
            &["docker", "kubernetes"],
            &["emptydir"],
        ),
        (
            "ci-cd",
            &[
                ("security", "low"),
                ("deployment", "simple"),
                ("build-data", "artifacts"),
            ],
            &["docker-compose"],
            &["s3"],
        ),
        // 5.7 plugins
        (
            "plugins",
            &[
                ("security", "high"),
                ("startup", "ultra-low"),
                ("plugin-data", "configuration"),
            ],
            &["wasmedge"],
            &["etcd"],
        ),
        (
            "plugins",
            &[("security", "ultra-high"), ("plugin-data", "data")],
            &["gvisor"],
            &["s3"],
        ),
    ];
    let kb = kb();
    for (scenario, given, runtime, storage) in table {
        let advice = kb.advise(Some(scenario), &answers(given), None).unwrap();
        assert_eq!(
            outcomes(&advice),
            vec![ids(runtime), ids(storage)],
            "{scenario} with {given:?}"
        );
        for part in &advice.parts {
            for step in &part.steps {
                let (_, origin) = step.answer.as_ref().unwrap();
                assert_eq!(
                    *origin,
                    Origin::Given,
                    "{scenario}: {} was given",
                    step.dimension
                );
            }
        }
    }
}

#[test]
fn the_seeds_first_choice_in_each_tree() {
    // The stack each tree names on its first branch (the seed's "→" on the first question).
    let table = [
        ("finance", vec!["kubevirt"]),
        ("microservices", vec!["docker", "kubernetes"]),
        ("serverless", vec!["firecracker|wasmedge"]),
        ("edge", vec!["k3s", "wasmedge"]),
        ("multi-tenant", vec!["qemu-kvm"]),
        ("ci-cd", vec!["docker"]),
        ("plugins", vec!["wasmedge"]),
    ];
    let kb = kb();
    for (scenario, stack) in table {
        let advice = kb.advise(Some(scenario), &Answers::new(), None).unwrap();
        assert_eq!(advice.parts[0].steps[0].stack, ids(&stack), "{scenario}");
    }
}

#[test]
fn scenario_summaries_are_the_seeds() {
    // Seed 004 section 7: the recommendation per scenario.
    let table = [
        ("finance", vec!["kubevirt"], vec!["ceph-rbd-nvme"]),
        (
            "microservices",
            vec!["docker", "kubernetes"],
            vec!["ceph-rbd-nvme"],
        ),
        ("serverless", vec!["wasmedge|firecracker"], vec!["s3"]),
        ("edge", vec!["k3s", "wasmedge"], vec!["local-pv"]),
        (
            "multi-tenant",
            vec!["kubevirt"],
            vec!["ceph-rbd-nvme|cephfs"],
        ),
        ("ci-cd", vec!["docker", "kubernetes"], vec!["emptydir|s3"]),
        ("plugins", vec!["wasmedge|gvisor"], vec!["etcd|s3"]),
    ];
    let kb = kb();
    for (scenario, runtime, storage) in table {
        let advice = kb.advise(Some(scenario), &Answers::new(), None).unwrap();
        assert_eq!(advice.summary["runtime"], ids(&runtime), "{scenario}");
        assert_eq!(advice.summary["storage"], ids(&storage), "{scenario}");
        assert_eq!(
            advice.summary["configuration"],
            ids(&["etcd"]),
            "{scenario}"
        );
    }
}

#[test]
fn the_runtime_matrix_is_the_seeds_and_drives_the_scenario_trees() {
    // Seed 004 matrix 4.1: scenario, security, performance, start-up, recommendation.
    let table = [
        ("finance", "ultra-high", "high", "medium", vec!["kubevirt"]),
        (
            "microservices",
            "medium",
            "high",
            "low",
            vec!["docker", "kubernetes"],
        ),
        (
            "serverless",
            "medium",
            "medium",
            "ultra-low",
            vec!["firecracker|wasmedge"],
        ),
        ("edge", "medium", "medium", "low", vec!["k3s", "wasmedge"]),
        (
            "multi-tenant",
            "ultra-high",
            "high",
            "medium",
            vec!["qemu-kvm"],
        ),
        ("ci-cd", "low", "medium", "low", vec!["docker"]),
        ("plugins", "high", "medium", "ultra-low", vec!["wasmedge"]),
    ];
    let kb = kb();
    assert_eq!(kb.runtime_matrix.len(), table.len());
    for (scenario, security, performance, startup, recommend) in &table {
        let given = answers(&[
            ("security", security),
            ("performance", performance),
            ("startup", startup),
        ]);
        let nearest = kb.nearest_scenarios(&given);
        let row = nearest
            .iter()
            .find(|row| row.scenario == *scenario)
            .unwrap_or_else(|| panic!("{scenario} is in the matrix"));
        assert_eq!(row.distance, 0, "{scenario}");
        assert_eq!(row.recommend, ids(recommend), "{scenario}");
    }
    // With nothing given, a scenario tree takes its answers from the matrix row: the
    // serverless row's medium security leads to the seed's Firecracker leaf, finance's high
    // performance to KubeVirt with DPU acceleration.
    let serverless = kb
        .advise(Some("serverless"), &Answers::new(), None)
        .unwrap();
    assert_eq!(outcomes(&serverless)[0], ids(&["firecracker"]));
    assert_eq!(
        serverless.parts[0].steps[0].answer,
        Some(("ultra-low".to_string(), Origin::Scenario))
    );
    let finance = kb.advise(Some("finance"), &Answers::new(), None).unwrap();
    assert_eq!(outcomes(&finance)[0], ids(&["kubevirt", "dpu"]));
    assert_eq!(outcomes(&finance)[1], ids(&["ceph-rbd-nvme"]));
}

#[test]
fn the_storage_matrix_is_the_seeds_and_the_general_tree_agrees() {
    // Seed 004 matrix 4.2: workload, durability, performance, scalability, recommendation.
    let table = [
        (
            "oltp",
            "high",
            "ultra-high",
            "medium",
            vec!["ceph-rbd-nvme"],
        ),
        (
            "mass-files",
            "high",
            "medium",
            "ultra-high",
            vec!["cephfs|glusterfs"],
        ),
        ("configuration", "high", "high", "medium", vec!["etcd"]),
        ("dev-test", "low", "medium", "low", vec!["emptydir"]),
        ("objects", "high", "medium", "ultra-high", vec!["minio|s3"]),
        (
            "cold-archive",
            "high",
            "low",
            "ultra-high",
            vec!["s3-glacier"],
        ),
    ];
    let kb = kb();
    assert_eq!(kb.storage_matrix.len(), table.len());
    for (workload, durability, performance, scalability, recommend) in &table {
        let row = kb
            .storage_matrix
            .iter()
            .find(|row| row.workload.get_ref() == workload)
            .unwrap();
        let level = |d: &str| row.requirements[d].get_ref().clone();
        assert_eq!(
            (
                level("durability"),
                level("storage-performance"),
                level("scalability")
            ),
            (
                durability.to_string(),
                performance.to_string(),
                scalability.to_string()
            ),
            "{workload}"
        );
        let recommended: Vec<String> = row.recommend.iter().map(|r| r.get_ref().clone()).collect();
        assert_eq!(recommended, ids(recommend), "{workload}");
        let advice = kb
            .advise(None, &answers(&[("storage", workload)]), None)
            .unwrap();
        assert_eq!(outcomes(&advice)[1], ids(recommend), "{workload}");
    }
}

#[test]
fn requirement_analysis_reproduces_section_2() {
    let table = [
        (
            "security",
            "ultra-high",
            vec!["kubevirt", "qemu-kvm", "firecracker"],
        ),
        (
            "security",
            "medium",
            vec!["docker", "kubernetes", "containerd"],
        ),
        ("security", "low", vec!["docker"]),
        (
            "performance",
            "ultra-high",
            vec!["docker", "kubernetes", "dpu", "gpu", "fpga"],
        ),
        ("performance", "medium", vec!["docker", "kubernetes"]),
        ("performance", "low", vec!["docker", "kubernetes"]),
        (
            "startup",
            "ultra-low",
            vec!["wasmedge", "kindling", "firecracker", "gvisor"],
        ),
        ("startup", "medium", vec!["docker", "kubernetes"]),
        (
            "startup",
            "relaxed",
            vec!["docker", "kubernetes", "kubevirt"],
        ),
        ("iteration", "fast", vec!["docker", "kubernetes", "helm"]),
        (
            "iteration",
            "medium",
            vec!["docker", "kubernetes", "kubevirt"],
        ),
        ("iteration", "slow", vec!["kubevirt", "qemu-kvm"]),
    ];
    let kb = kb();
    for (dimension, level, recommend) in table {
        let advice = kb
            .advise(None, &answers(&[(dimension, level)]), None)
            .unwrap();
        assert_eq!(advice.analysis.len(), 1, "{dimension} {level}");
        assert_eq!(
            advice.analysis[0].recommend,
            ids(&recommend),
            "{dimension} {level}"
        );
    }
}

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

#[test]
fn isolation_orders_are_the_seeds() {
    let kb = kb();
    // Strength: L-0 = L-4 > L-1 > L-2 > L-3.
    let strength: Vec<usize> = ["L-0", "L-1", "L-2", "L-3", "L-4"]
        .iter()
        .map(|l| kb.strength_rank(l).unwrap())
        .collect();
    assert_eq!(strength, vec![0, 1, 2, 3, 0]);
    // Overhead: L-3 < L-4 < L-2 < L-1 < L-0.
    let overhead: Vec<usize> = ["L-3", "L-4", "L-2", "L-1", "L-0"]
        .iter()
        .map(|l| kb.overhead_rank(l).unwrap())
        .collect();
    assert_eq!(overhead, vec![0, 1, 2, 3, 4]);
    let text = kb.isolation_text();
    assert!(
        text.contains("strength: L-0 = L-4 > L-1 > L-2 > L-3"),
        "{text}"
    );
    assert!(
        text.contains("overhead: L-3 < L-4 < L-2 < L-1 < L-0"),
        "{text}"
    );
}

#[test]
fn coordinates_name_stacks_both_ways() {
    let kb = kb();
    let table = [
        ("4,2,3,2025,1,edge,OTLP+eBPF", "K3s + WasmEdge + Gatekeeper"),
        (
            "3,1,2,2025,1,microservices,Prometheus",
            "K8s + containerd + OPA-Runtime",
        ),
        (
            "4,2,4,2025,1,Serverless,OTLP",
            "K3s + WasmEdge + OPA+business rules",
        ),
    ];
    for (coordinate, stack) in table {
        let at = Coordinate::parse(coordinate).unwrap();
        let near = kb.stacks_near(&at, 3);
        assert_eq!(near[0].stack, stack, "{coordinate}");
        assert_eq!(near[0].distance, 0.0, "{coordinate}");
        let back = kb.coordinates_of(stack);
        assert_eq!(back[0].distance, 0.0, "{stack}");
        assert!(
            back[0].at.scenario.eq_ignore_ascii_case(&at.scenario),
            "{stack}"
        );
        assert_eq!(back[0].at.isolation, at.isolation, "{stack}");
    }
    // No exact entry: the nearest, with what differs.
    let at = Coordinate::parse("4,2,4,2025,1,serverless,OTLP+eBPF").unwrap();
    let near = kb.stacks_near(&at, 3);
    assert_eq!(near[0].stack, "K3s + WasmEdge + OPA+business rules");
    assert_eq!(near[0].distance, 0.5);
    assert_eq!(near[0].differs.len(), 1);
    assert_eq!(near[0].differs[0].0, "observability");
    // A stack given by components finds its entry.
    assert_eq!(
        kb.coordinates_of("k3s + wasmedge + gatekeeper")[0].stack,
        "K3s + WasmEdge + Gatekeeper"
    );
    for bad in [
        "4,2,3",
        "x,2,3,2025,1,edge,OTLP",
        "4,2,3,2025,1,,OTLP",
        "4,2,3,2025,999,edge,OTLP",
    ] {
        assert!(Coordinate::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_serverless_evolution_path() {
    let kb = kb();
    let path = kb.evolution_of("serverless").unwrap();
    let years: Vec<u16> = path.steps.iter().map(|s| s.at.year).collect();
    assert_eq!(years, vec![2020, 2023, 2025]);
    // 2020 -> 2023: isolation L-3 -> L-4, orchestration cluster -> lightweight, policy
    // runtime -> application, Prometheus -> OTLP.
    let changes: Vec<&str> = path.steps[1].changes.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        changes,
        vec![
            "isolation",
            "orchestration",
            "policy",
            "year",
            "observability"
        ]
    );
    assert_eq!(path.steps[1].changes[0].1, "L-3");
    assert_eq!(path.steps[1].changes[0].2, "L-4");
    assert_eq!(
        path.steps[2].nearest.as_ref().unwrap().stack,
        "K3s + WasmEdge + OPA+business rules"
    );
    assert!(kb.evolution_of("finance").is_err());
}

#[test]
fn mermaid_shows_the_tree_and_the_path_taken() {
    let kb = kb();
    let advice = kb
        .advise(
            Some("serverless"),
            &answers(&[("security", "high"), ("state", "stateless")]),
            None,
        )
        .unwrap();
    let chart = kb.mermaid("serverless", Some(&advice)).unwrap();
    assert!(chart.starts_with("flowchart TD\n"), "{chart}");
    assert!(
        chart.contains("n_startup -- \"ultra-low\" --> n_security"),
        "{chart}"
    );
    let class = chart
        .lines()
        .find(|l| l.trim_start().starts_with("class "))
        .unwrap();
    for node in ["root", "n_startup", "n_security", "n_state"] {
        assert!(class.contains(node), "{class}");
    }
    // Exactly two leaves are highlighted: WasmEdge and EmptyDir.
    assert_eq!(class.matches(",l").count(), 2, "{class}");
    assert!(kb.mermaid("nowhere", None).is_none());
}

#[test]
fn a_function_is_judged_against_the_sandbox_and_its_limits() {
    let kb = kb();
    let mut profile = FunctionProfile {
        name: "api".into(),
        requirements: answers(&[("security", "high"), ("startup", "ultra-low")]),
        memory_bytes: Some(64 << 20),
        timeout_ms: Some(2000),
        last_cold_start_ms: Some(0.8),
        ..FunctionProfile::default()
    };
    let verdict = kb.judge_function(&profile).unwrap();
    assert!(verdict.meets);
    assert!(verdict.instead.is_none());
    let text = kb.verdict_text(&verdict);
    assert!(text.contains("memory capped at 64 MiB"), "{text}");
    assert!(text.contains("last cold start took 0.80 ms"), "{text}");

    // Open outbound access breaks high security.
    profile.allowed_outbound_hosts = vec!["*://*:*".into()];
    let verdict = kb.judge_function(&profile).unwrap();
    assert!(!verdict.meets);
    assert!(
        verdict
            .checks
            .iter()
            .any(|c| c.met == Some(false) && c.reason.contains("any host"))
    );

    // Ultra-high security is beyond a shared-kernel sandbox: a micro-VM instead.
    profile.allowed_outbound_hosts = vec!["https://api.example.com".into()];
    profile.requirements = answers(&[
        ("security", "ultra-high"),
        ("startup", "ultra-low"),
        ("storage", "oltp"),
    ]);
    let verdict = kb.judge_function(&profile).unwrap();
    assert!(!verdict.meets);
    let storage = verdict
        .checks
        .iter()
        .find(|c| c.dimension == "storage")
        .unwrap();
    assert_eq!(storage.met, None);
    let instead = verdict.instead.as_ref().unwrap();
    assert_eq!(
        outcomes(instead),
        vec![ids(&["firecracker"]), ids(&["ceph-rbd-nvme"])]
    );
    // Without a declared storage requirement, the storage walk (all assumptions) is left out.
    profile.requirements = answers(&[("security", "ultra-high")]);
    let verdict = kb.judge_function(&profile).unwrap();
    assert_eq!(
        outcomes(verdict.instead.as_ref().unwrap()),
        vec![ids(&["kubevirt"])]
    );
}

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
