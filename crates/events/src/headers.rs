//! Which headers may reach a function from outside. Kindling's own `kindling-*` headers
//! (invocation id, attempt, schedule, trigger, delivery) are set by the node only: a copy
//! from a client, a publisher or a stored request is dropped, so that a function can trust
//! them. The call-chain headers are the exception; they can only shorten a chain. Hop-by-hop
//! headers belong to the connection they came on.

/// Headers of a connection, not of a request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header from outside may be passed to a function (`name` in lowercase).
pub fn passes(name: &str) -> bool {
    if HOP_BY_HOP.contains(&name) {
        return false;
    }
    match name.strip_prefix("kindling-") {
        None => true,
        Some(rest) => matches!(rest, "call-depth" | "call-budget"),
    }
}

#[cfg(test)]
mod tests {
    use super::passes;

    #[test]
    fn only_the_node_sets_its_own_headers() {
        assert!(passes("content-type"));
        assert!(passes("x-kindling-anything"));
        assert!(passes("kindling-call-depth"));
        assert!(!passes("kindling-invocation-id"));
        assert!(!passes("kindling-schedule"));
        assert!(!passes("kindling-trigger"));
        assert!(!passes("transfer-encoding"));
    }
}
