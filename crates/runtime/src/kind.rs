//! Telling function kinds apart from the binary alone: a `wasi:http/proxy` component or a WAGI
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
    /// A WASI preview 1 command module spoken to through CGI 1.1 (WAGI).
    Wagi,
}

impl FunctionKind {
    /// The stable name used in the registry, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WasiHttp => "wasi-http",
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
    fn kinds_round_trip_through_their_names() {
        for kind in [FunctionKind::WasiHttp, FunctionKind::Wagi] {
            assert_eq!(kind.as_str().parse::<FunctionKind>().unwrap(), kind);
        }
        assert!("docker".parse::<FunctionKind>().is_err());
    }
}
