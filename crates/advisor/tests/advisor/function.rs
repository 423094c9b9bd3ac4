//! A deployed function's declared requirements judged against the sandbox and its limits.

use kindling_advisor::FunctionProfile;

use crate::{answers, ids, kb, outcomes};

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
