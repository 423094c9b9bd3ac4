//! The allow-list of outbound HTTP, in Spin's form: `https://api.example.com` (default port of
//! the scheme), `http://*.internal:8080` (any subdomain), `*://example.com:*` (any scheme and
//! port). Everything else is refused.

/// One allowed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// `None` matches http and https.
    scheme: Option<Scheme>,
    host: HostPattern,
    /// `None` matches any port; `Some(None)` the scheme's default port.
    port: Option<Option<u16>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.internal` is stored as `.internal`.
    Suffix(String),
}

/// The hosts a function may reach over outgoing HTTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    rules: Vec<Rule>,
}

impl OutboundPolicy {
    /// Parses allow-list entries, refusing any that is not of a supported form.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let rules = entries
            .iter()
            .map(|entry| parse_rule(entry))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// True when no outgoing HTTP is allowed at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub(crate) fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.rules.iter().any(|rule| {
            rule.scheme.is_none_or(|s| s == scheme)
                && match &rule.host {
                    HostPattern::Any => true,
                    HostPattern::Exact(exact) => *exact == host,
                    HostPattern::Suffix(suffix) => {
                        host.len() > suffix.len() && host.ends_with(suffix.as_str())
                    }
                }
                && match rule.port {
                    None => true,
                    Some(None) => port == scheme.default_port(),
                    Some(Some(p)) => port == p,
                }
        })
    }
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let bad = |why: &str| {
        Err(format!(
            "allowed outbound host {entry:?} {why}; write it like https://api.example.com, \
             http://*.internal:8080 or *://example.com:*"
        ))
    };
    let Some((scheme, rest)) = entry.split_once("://") else {
        return bad("has no scheme");
    };
    let scheme = match scheme {
        "http" => Some(Scheme::Http),
        "https" => Some(Scheme::Https),
        "*" => None,
        _ => return bad("has a scheme other than http, https or *"),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return bad("has a path, query or user name; only scheme, host and port are allowed");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, "*")) => (host, None),
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host, Some(Some(port))),
            Err(_) => return bad("has an invalid port"),
        },
        None => (rest, Some(None)),
    };
    if scheme.is_none() && port == Some(None) {
        return bad("needs an explicit port (or :*) when the scheme is *");
    }
    let host = host.to_ascii_lowercase();
    let host = if host == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return bad("has a malformed wildcard");
        }
        HostPattern::Suffix(format!(".{suffix}"))
    } else if host.is_empty() || host.contains('*') {
        return bad("has an empty or malformed host");
    } else {
        HostPattern::Exact(host)
    };
    Ok(Rule { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_hosts_use_the_scheme_default_port() {
        let p = policy(&["https://api.example.com"]);
        assert!(p.allows(Scheme::Https, "api.example.com", 443));
        assert!(p.allows(Scheme::Https, "API.example.com.", 443));
        assert!(!p.allows(Scheme::Https, "api.example.com", 8443));
        assert!(!p.allows(Scheme::Http, "api.example.com", 80));
        assert!(!p.allows(Scheme::Https, "evil.com", 443));
        assert!(!p.allows(Scheme::Https, "api.example.com.evil.com", 443));
    }

    #[test]
    fn wildcards_cover_subdomains_ports_and_schemes() {
        let p = policy(&["http://*.internal:8080", "*://example.com:*"]);
        assert!(p.allows(Scheme::Http, "db.internal", 8080));
        assert!(p.allows(Scheme::Http, "a.b.internal", 8080));
        assert!(!p.allows(Scheme::Http, "internal", 8080));
        assert!(!p.allows(Scheme::Http, "db.internal", 80));
        assert!(!p.allows(Scheme::Https, "db.internal", 8080));
        assert!(p.allows(Scheme::Http, "example.com", 1234));
        assert!(p.allows(Scheme::Https, "example.com", 443));
        assert!(policy(&["https://*:*"]).allows(Scheme::Https, "anything.at.all", 9));
        assert!(policy(&[]).is_empty());
        assert!(!policy(&[]).allows(Scheme::Https, "example.com", 443));
    }

    #[test]
    fn malformed_entries_are_refused_with_the_form_to_use() {
        for bad in [
            "api.example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:port",
            "*://example.com",
            "https://*.",
            "https://a*b.com",
            "https://",
        ] {
            let err = OutboundPolicy::parse(&[bad.to_string()]).unwrap_err();
            assert!(err.contains("write it like https://"), "{bad}: {err}");
        }
    }
}
