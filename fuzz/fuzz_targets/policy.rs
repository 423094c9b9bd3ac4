//! Fuzzes Rego policies and their inputs: any source must compile or be refused with a
//! message naming it; a policy that compiles must decide any input (allow, deny or an error
//! that fails closed), never panic. The input is `SOURCE \0 JSON`.

#![no_main]

use kindling_access::Policies;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, input) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let policies = Policies::new(&prometheus::Registry::new());
    let set = vec![("fuzz".to_string(), source.to_string())];
    if let Err(err) = policies.install(&set) {
        assert_eq!(err.name, "fuzz");
        assert!(!err.message.is_empty());
        return;
    }
    let input: serde_json::Value = serde_json::from_slice(input).unwrap_or_default();
    // Allowed, denied with messages, or an evaluation error (which the node turns into a
    // refusal): any of them, but an answer.
    let _ = policies.admission(&input);
});
