//! Fuzzes the module half of a deploy: kind detection, validation, compilation and linking of
//! arbitrary bytes. Any input must become a function or a refusal, never a panic or a crash.

#![no_main]

use std::sync::OnceLock;

use kindling_runtime::{FunctionSettings, Runtime, RuntimeConfig};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<(Runtime, std::path::PathBuf)> = OnceLock::new();
    &RUNTIME
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("kindling-fuzz-{}", std::process::id()));
            let mut config = RuntimeConfig::default();
            config.max_instances = 4;
            let runtime = Runtime::new(&config, dir.clone()).expect("runtime starts");
            (runtime, dir)
        })
        .0
}

fuzz_target!(|data: &[u8]| {
    match runtime().prepare(data, "fuzz", FunctionSettings::default()) {
        Ok(loaded) => {
            let _ = loaded.function.kind();
        }
        Err(err) => {
            // Every refusal must say something.
            assert!(!err.to_string().is_empty());
        }
    }
});
