//! Telling function kinds apart from the binary alone: a `wasi:http` component (WASI 0.2 or
//! 0.3) or a WAGI
//! (WASI preview 1 command) module. No flag is needed at deploy.

use std::fmt;
use std::str::FromStr;

use crate::error::PrepareError;

/// The kinds of WebAssembly binary Kindling runs as functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FunctionKind {
    /// A component exporting `wasi:http/incoming-handler` (WASI 0.2, the `wasi:http/proxy`
    /// world), as served by `wasmtime serve` or Spin.
    WasiHttp,
    /// A component exporting `wasi:http/handler@0.3` (WASI 0.3, the `wasi:http/service`
    /// world), as spin-sdk 6 and 7 build and `wasmtime serve` 49 runs.
    WasiHttp3,
    /// A WASI preview 1 command module spoken to through CGI 1.1 (WAGI).
    Wagi,
}

impl FunctionKind {
    /// The stable name used in the registry, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WasiHttp => "wasi-http",
            Self::WasiHttp3 => "wasi-http-0.3",
            Self::Wagi => "wagi",
        }
    }
}

impl fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FunctionKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wasi-http" => Ok(Self::WasiHttp),
            "wasi-http-0.3" => Ok(Self::WasiHttp3),
            "wagi" => Ok(Self::Wagi),
            other => Err(format!("unknown function kind {other:?}")),
        }
    }
}

/// The binary encodings a WebAssembly file can have, read from its 8-byte preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// A core module (`\0asm` version 1).
    CoreModule,
    /// A component (`\0asm`, version 0x0d, layer 1).
    Component,
}

/// Reads the preamble; refuses anything that is not WebAssembly with a message that says what
/// was found instead.
pub(crate) fn encoding(bytes: &[u8]) -> Result<Encoding, PrepareError> {
    const MAGIC: &[u8; 4] = b"\0asm";
    if bytes.is_empty() {
        return Err(PrepareError::Unsupported(
            "the upload is empty: send the bytes of a .wasm file".into(),
        ));
    }
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PrepareError::NotWasm {
            found: describe_prefix(bytes),
            hint: what_it_is(bytes),
        });
    }
    match (&bytes[4..6], &bytes[6..8]) {
        ([1, 0], [0, 0]) => Ok(Encoding::CoreModule),
        (_, [1, 0]) => Ok(Encoding::Component),
        (version, layer) => Err(PrepareError::Unsupported(format!(
            "unknown WebAssembly version {version:?} / layer {layer:?}: expected a core module \
             (version 1) or a component (layer 1)"
        ))),
    }
}

/// The names a component imports and exports at its top level (`wasi:http/types@0.2.0`), read
/// without compiling it; nested components and core modules are skipped. The bytes are not
/// validated here: compiling does that.
pub(crate) fn component_names(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), PrepareError> {
    use wasmparser::{Parser, Payload};
    let invalid = |err: wasmparser::BinaryReaderError| PrepareError::Invalid(err.to_string());
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    // Payloads of nested modules and components come inline, each ending with its own `End`.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 0 => {
                for import in section {
                    imports.push(import.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 0 => {
                for export in section {
                    exports.push(export.map_err(invalid)?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// What a file that is not binary WebAssembly looks like, and what to do with it.
fn what_it_is(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    // WebAssembly text starts with the form, after any comments and blank space.
    let code = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with(";;"))
        .unwrap_or("");
    let hint = if code.starts_with("(module") {
        "it is a WebAssembly text module (.wat): compile it to binary first, for example with \
         `wasm-tools parse hello.wat -o hello.wasm`"
    } else if code.starts_with("(component") {
        "it is a WebAssembly text component (.wat): compile it to binary first, for example with \
         `wasm-tools parse hello.wat -o hello.wasm`"
    } else if bytes.starts_with(b"PK\x03\x04") {
        "it is a zip archive: unpack it and deploy the .wasm file inside"
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        "it is gzip-compressed: decompress it (`gunzip`) and deploy the .wasm file"
    } else if bytes.starts_with(b"\x7fELF") {
        "it is a native ELF executable: build the program for a wasm32 target instead \
         (`cargo build --target wasm32-wasip2`)"
    } else if code.starts_with("<!") || code.to_ascii_lowercase().starts_with("<html") {
        "it is an HTML page: the download probably failed; fetch the .wasm file itself"
    } else {
        return String::new();
    };
    format!("; {hint}")
}

fn describe_prefix(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    match std::str::from_utf8(head) {
        Ok(text) if text.chars().all(|c| !c.is_control()) => text.to_string(),
        _ => head
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_s_own_imports_and_exports_are_read_not_its_children_s() {
        let wasm = wat::parse_str(
            r#"(component
                 (import "wasi:cli/environment@0.3.0" (instance $env))
                 (component $inner
                   (import "inner:only/import@1.0.0" (instance $in))
                   (export "inner:only/export@1.0.0" (instance $in)))
                 (core module $m (func (export "f")))
                 (export "wasi:http/handler@0.3.0" (instance $env)))"#,
        )
        .unwrap();
        let (imports, exports) = component_names(&wasm).unwrap();
        assert_eq!(imports, ["wasi:cli/environment@0.3.0"]);
        assert_eq!(exports, ["wasi:http/handler@0.3.0"]);
        assert!(component_names(b"\0asm\x0d\0\x01\0\x99").is_err());
    }

    #[test]
    fn preamble_decides_the_encoding() {
        assert_eq!(
            encoding(b"\0asm\x01\0\0\0rest").unwrap(),
            Encoding::CoreModule
        );
        assert_eq!(
            encoding(b"\0asm\x0d\0\x01\0rest").unwrap(),
            Encoding::Component
        );
    }

    #[test]
    fn refusals_say_what_was_found() {
        let err = encoding(b"#!/bin/sh\necho hi").unwrap_err().to_string();
        assert!(err.contains("not a WebAssembly binary"), "{err}");
        assert!(err.contains("#!/bin/s"), "{err}");
        let err = encoding(b"").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = encoding(b"\0asm\x01").unwrap_err().to_string();
        assert!(err.contains("not a WebAssembly binary"), "{err}");
        let err = encoding(b"\0asm\x02\0\x07\0").unwrap_err().to_string();
        assert!(err.contains("unknown WebAssembly version"), "{err}");
    }

    #[test]
    fn look_alikes_are_named_with_what_to_do() {
        let cases: [(&[u8], &str); 6] = [
            (b";; hello\n(module (func))", "text module (.wat)"),
            (b"  (component)", "text component (.wat)"),
            (b"PK\x03\x04\x14\0\0\0", "zip archive"),
            (b"\x1f\x8b\x08\0\0\0\0\0", "gzip"),
            (b"\x7fELF\x02\x01\x01\0", "ELF"),
            (b"<!DOCTYPE html><html>", "HTML page"),
        ];
        for (bytes, needle) in cases {
            let err = encoding(bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
        let err = encoding(b"#!/bin/sh\necho hi").unwrap_err().to_string();
        assert!(
            !err.contains("; it is"),
            "no guess for a shell script: {err}"
        );
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [
            FunctionKind::WasiHttp,
            FunctionKind::WasiHttp3,
            FunctionKind::Wagi,
        ] {
            assert_eq!(kind.as_str().parse::<FunctionKind>().unwrap(), kind);
        }
        assert!("docker".parse::<FunctionKind>().is_err());
    }
}
