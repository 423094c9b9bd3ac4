//! Fuzzes the configuration half of a deploy: the JSON `config` part, its validation, and
//! every built-in capability's section (environment, mounts, the outbound allow-list). Any
//! input must parse or be refused with an error, never panic.

#![no_main]

use std::sync::OnceLock;

use kindling_host::{Capabilities, FunctionContext};
use kindling_registry::FunctionConfig;
use libfuzzer_sys::fuzz_target;

fn capabilities() -> &'static Capabilities {
    static CAPABILITIES: OnceLock<Capabilities> = OnceLock::new();
    CAPABILITIES.get_or_init(|| Capabilities::builtin(Some(std::env::temp_dir())))
}

fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<FunctionConfig>(data) else {
        return;
    };
    let _ = config.validate();
    let function = FunctionContext {
        name: "fuzz",
        namespace: config.namespace(),
    };
    if let Err(err) = capabilities().configure(&config.sections, &function, FunctionConfig::FIELDS)
    {
        assert!(!err.to_string().is_empty(), "every refusal says something");
    }
    // Round trip: what the registry stores must read back the same.
    let stored = serde_json::to_string(&config).expect("a parsed config serializes");
    let back: FunctionConfig = serde_json::from_str(&stored).expect("a stored config parses");
    assert_eq!(back, config);
});
