//! Seed 003: the isolation orders, technology coordinates both ways, the serverless evolution
//! path; and the Mermaid drawing of a tree.

use kindling_advisor::Coordinate;

use crate::{answers, kb};

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
