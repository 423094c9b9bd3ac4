//! Fuzzes the module half of a deploy: kind detection, validation, compilation and linking of
//! arbitrary bytes. Any input must become a function or a refusal, never a panic or a crash.

#![no_main]

use std::sync::OnceLock;

use kindling_host::{Capabilities, FunctionContext};
use kindling_runtime::{FunctionSettings, Limits, Runtime, RuntimeConfig};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<(Runtime, std::path::PathBuf)> = OnceLock::new();
    &RUNTIME
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("kindling-fuzz-{}", std::process::id()));
            let mut config = RuntimeConfig::default();
            config.max_instances = 4;
            let runtime = Runtime::new(&config, dir.clone(), Capabilities::builtin(None))
                .expect("runtime starts");
            (runtime, dir)
        })
        .0
}

fn settings() -> FunctionSettings {
    let function = FunctionContext {
        name: "fuzz",
        namespace: "default",
    };
    let configured = runtime()
        .capabilities()
        .configure(&Default::default(), &function, &[])
        .expect("an empty configuration resolves");
    FunctionSettings {
        limits: Limits::default(),
        capabilities: std::sync::Arc::new(configured),
    }
}

fuzz_target!(|data: &[u8]| {
    // Keyed by content like a real deploy, so that the artifact cache never answers for
    // other bytes; each artifact is dropped again so the cache stays empty.
    let sha256 = kindling_registry::sha256_hex(data);
    match runtime().prepare(data, &sha256, settings()) {
        Ok(loaded) => {
            let _ = loaded.function.kind();
            runtime().forget(&sha256);
        }
        Err(err) => {
            // Every refusal must say something.
            assert!(!err.to_string().is_empty());
        }
    }
});
