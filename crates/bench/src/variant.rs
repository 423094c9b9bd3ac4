//! Distinct copies of one module, for the cold-start and density scenarios: each copy carries
//! a trailing custom section with its number, so the node sees a different module (its own
//! hash, its own compiled artifact, its own resident code) that behaves exactly the same.

/// The custom section's name.
const SECTION: &str = "kindling-bench-variant";

/// `module` (a core module or a component) with a custom section naming `index` appended.
/// Custom sections may follow any section in both formats, and the runtime ignores them.
pub fn variant(module: &[u8], index: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    leb128(&mut payload, SECTION.len() as u64);
    payload.extend_from_slice(SECTION.as_bytes());
    payload.extend_from_slice(&index.to_le_bytes());
    let mut out = Vec::with_capacity(module.len() + payload.len() + 6);
    out.extend_from_slice(module);
    out.push(0);
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_custom_section() {
        let header = b"\0asm\x01\0\0\0";
        let copy = variant(header, 300);
        assert_eq!(&copy[..8], header);
        // id 0, size 31 = 1 (name length) + 22 (name) + 8 (index)
        assert_eq!(copy[8..10], [0, 31]);
        assert_eq!(copy[10], 22);
        assert_eq!(&copy[11..33], SECTION.as_bytes());
        assert_eq!(copy[33..], 300u64.to_le_bytes());
        assert_ne!(variant(header, 1), variant(header, 2));
    }

    #[test]
    fn leb128_uses_continuation_bits() {
        let mut out = Vec::new();
        leb128(&mut out, 624_485);
        assert_eq!(out, [0xe5, 0x8e, 0x26]);
    }
}
