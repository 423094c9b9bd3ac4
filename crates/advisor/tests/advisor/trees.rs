//! Seed 004: every leaf of the seven scenario trees, their first choices and summaries, both
//! decision matrices and the requirement analysis of section 2.

use kindling_advisor::{Answers, Origin};

use crate::{answers, ids, kb, outcomes};

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
