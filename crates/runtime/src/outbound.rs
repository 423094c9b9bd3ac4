//! Outbound HTTP. A function may call only hosts it declared at deploy, in Spin's form:
//! `https://api.example.com` (default port of the scheme), `http://*.internal:8080` (any
//! subdomain), `*://example.com:*` (any scheme and port). Everything else is refused with
//! `HttpRequestDenied` to the guest and a log line on the host.
//!
//! An allowed call to `http://{name}.fn.local/...` never leaves the process: it goes to the
//! node's function `name` through [`LocalFunctions`] (admission, limits and metrics included).
//! When the request is traced, each call is a client span and carries `traceparent`, so a chain
//! of functions is one trace.

use std::fmt;
use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

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
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
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
    fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
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

/// The host suffix of in-process calls: `http://{name}.fn.local/`.
pub const LOCAL_SUFFIX: &str = ".fn.local";

/// A call to another function of the node, answered in process.
pub type LocalCall = std::pin::Pin<
    Box<dyn Future<Output = Result<http::Response<WasiBody>, HttpError>> + Send + 'static>,
>;

/// How many in-process calls deep a request is: 0 for a request from outside, 1 for a call a
/// function made through `fn.local`, and so on. Set by the host as a request extension, which a
/// guest cannot forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallDepth(pub u32);

/// The node's functions as seen from a guest's outbound calls.
pub trait LocalFunctions: Send + Sync + fmt::Debug {
    /// Invokes `function` with `request` (its URI is the path and query the caller used).
    fn call(&self, function: &str, request: http::Request<WasiBody>) -> LocalCall;
}

/// The `wasi:http` hooks of one request: outgoing requests go through the allow-list, become
/// client spans when the request is traced, and reach `*.fn.local` in process.
pub(crate) struct OutboundHooks {
    pub(crate) policy: Arc<OutboundPolicy>,
    pub(crate) function: Arc<str>,
    pub(crate) request_id: Arc<str>,
    pub(crate) trace: Option<crate::invocation::RequestTrace>,
    pub(crate) local: Option<Arc<dyn LocalFunctions>>,
    pub(crate) call_depth: u32,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = match uri.scheme_str() {
            Some("https") => Some(Scheme::Https),
            Some("http") => Some(Scheme::Http),
            _ => None,
        };
        let host = uri.host().unwrap_or_default();
        let allowed = scheme.is_some_and(|scheme| {
            let port = uri.port_u16().unwrap_or(scheme.default_port());
            self.policy.allows(scheme, host, port)
        });
        if !allowed {
            tracing::warn!(
                function = %self.function,
                request_id = %self.request_id,
                destination = %Destination(uri),
                "outbound HTTP request denied: the destination is not in the function's \
                 allowed_outbound_hosts"
            );
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        drop(fut);
        let span = self.trace.as_ref().map(|trace| {
            let mut span = trace.tracer.start(
                format!("{} {host}", request.method()),
                kindling_telemetry::SpanKind::Client,
                Some(trace.parent),
            );
            span.set("http.request.method", request.method().as_str());
            span.set("server.address", host);
            if let Some(port) = uri.port_u16() {
                span.set("server.port", port);
            }
            span.set("url.full", format!("{}", Destination(uri)) + uri.path());
            span
        });
        let local = host
            .strip_suffix(LOCAL_SUFFIX)
            .filter(|name| !name.is_empty() && !name.contains('.'))
            .map(str::to_string);
        if let Some(span) = &span
            && let Ok(value) = http::HeaderValue::from_str(&span.context().header())
        {
            request.headers_mut().insert("traceparent", value);
        }
        let dispatcher = self.local.clone();
        if local.is_some() {
            request
                .extensions_mut()
                .insert(CallDepth(self.call_depth + 1));
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let result = match (local, dispatcher) {
                (Some(name), Some(dispatcher)) => {
                    dispatcher.call(&name, request).await.map(|response| {
                        let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                            Box::new(async { Ok(()) });
                        (response, done)
                    })
                }
                (Some(_), None) => Err(HttpError::DestinationNotFound),
                (None, _) => wasmtime_wasi_http::default_send_request(request, options)
                    .await
                    .map(|(response, io)| {
                        let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                            Box::new(io);
                        (response.map(BodyExt::boxed_unsync), io)
                    }),
            };
            if let Some(mut span) = span {
                match &result {
                    Ok((response, _)) => {
                        span.set("http.response.status_code", response.status().as_u16());
                        if response.status().is_server_error() {
                            span.fail(response.status().to_string());
                        }
                    }
                    Err(err) => span.fail(format!("{err:?}")),
                }
                span.end();
            }
            result
        })
    }
}

/// Shows scheme, host and port of a URI, never its path or query (which may hold secrets).
struct Destination<'a>(&'a http::Uri);

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        write!(
            f,
            "{}://{}",
            uri.scheme_str().unwrap_or("?"),
            uri.authority().map(|a| a.as_str()).unwrap_or("?")
        )
    }
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
