//! Fuzzes the configuration half of a deploy: the JSON `config` part, its validation, and
//! the outbound allow-list. Any input must parse or be refused with an error, never panic.

#![no_main]

use kindling_registry::FunctionConfig;
use kindling_runtime::OutboundPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<FunctionConfig>(data) else {
        return;
    };
    let _ = config.validate();
    let _ = OutboundPolicy::parse(&config.allowed_outbound_hosts);
    // Round trip: what the registry stores must read back the same.
    let stored = serde_json::to_string(&config).expect("a parsed config serializes");
    let back: FunctionConfig = serde_json::from_str(&stored).expect("a stored config parses");
    assert_eq!(back, config);
});
