//! Invoking a WAGI function: a WASI preview 1 command run once per request under CGI 1.1
//! (RFC 3875). Request metadata goes in as environment variables, the body on stdin; the
//! guest's stdout is parsed as CGI headers, a blank line and the body.
//!
//! CGI output is buffered (it cannot be streamed before the headers are complete and the
//! guest has exited), so it is capped by the function's response limit.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use kindling_host::{
    BoxError, HostState, InstanceKind, ModuleCtx, OutputCapture, ResponseBody, WhenFull,
};
use tokio::time::Instant;
use wasmtime::InstancePre;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use crate::error::InvokeError;
use crate::function::Inner;
use crate::invocation::{Invoked, RequestInfo, classify};
use crate::store::{StoreParts, finish};

pub(crate) async fn invoke<B>(
    function: &Inner,
    pre: &InstancePre<HostState<ModuleCtx>>,
    request: http::Request<B>,
    info: &RequestInfo,
) -> Result<Invoked, InvokeError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = function.settings.limits;
    let deadline = Instant::now() + limits.timeout;
    let (head, body) = request.into_parts();

    let body = tokio::time::timeout_at(
        deadline,
        Limited::new(body, limits.max_request_body_bytes as usize).collect(),
    )
    .await
    .map_err(|_| InvokeError::Timeout(limits.timeout))?
    .map_err(|err| {
        if err.is::<http_body_util::LengthLimitError>() {
            InvokeError::RequestBodyTooLarge {
                limit: limits.max_request_body_bytes,
            }
        } else {
            InvokeError::RequestBody(err.to_string())
        }
    })?
    .to_bytes();

    let stdout = OutputCapture::new(limits.max_response_body_bytes as usize, WhenFull::Refuse);
    let parts = StoreParts {
        engine: pre.module().engine(),
        capabilities: &function.shared.capabilities,
        settings: &function.settings,
        info,
        deadline,
        fuel: function.fuel(),
    };
    let content_length = body.len();
    let mut store = parts.build(
        InstanceKind::Wagi,
        |wasi, env| {
            wasi.args(&[info.script_name.as_str()])
                .stdin(MemoryInputPipe::new(body))
                .stdout(stdout.clone());
            cgi_environment(&head, content_length, info, &env)
        },
        |wasi| wasi.build_p1(),
    )?;

    let mut instantiate = Duration::ZERO;
    let run = async {
        let instantiating = std::time::Instant::now();
        let instance = pre.instantiate_async(&mut store).await?;
        instantiate = instantiating.elapsed();
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    };
    let mut busy = function.weight.start();
    let result =
        tokio::time::timeout_at(deadline, crate::executor::busy_timed(run, &mut busy)).await;
    function.weight.record(busy);
    finish(&mut store, &function.shared.capabilities, info);
    let (output, output_dropped) = stdout.take();

    let exit_code = match result {
        Err(_elapsed) => return Err(InvokeError::Timeout(limits.timeout)),
        Ok(Ok(())) => 0,
        Ok(Err(err)) => match err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => exit.0,
            None => {
                let refused = store.data().limiter.memory_refused();
                return Err(classify(&err, &limits, refused));
            }
        },
    };
    if output_dropped > 0 {
        return Err(InvokeError::ResponseTooLarge {
            limit: limits.max_response_body_bytes,
        });
    }
    if exit_code != 0 {
        // Whatever it wrote before failing may be half a response: never pass it on as whole.
        let wrote = if output.is_empty() {
            "without writing a response".to_string()
        } else {
            format!("after writing {} bytes of output", output.len())
        };
        return Err(InvokeError::BadCgiResponse(format!(
            "the module exited with status {exit_code} {wrote}"
        )));
    }
    Ok(Invoked {
        response: parse_cgi_response(output)?,
        instantiate,
    })
}

/// Builds the CGI 1.1 environment: the function's own variables first, then the request
/// metadata, which wins on a clash so that a function cannot be misled about its request.
fn cgi_environment(
    parts: &http::request::Parts,
    content_length: usize,
    info: &RequestInfo,
    function_env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = function_env.to_vec();
    let mut set = |name: &str, value: String| {
        env.retain(|(existing, _)| existing != name);
        env.push((name.to_string(), value));
    };
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            (name.to_string(), port.to_string())
        }
        _ => (
            host.to_string(),
            info.local_addr
                .map(|a| a.port().to_string())
                .unwrap_or_default(),
        ),
    };

    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set(
        "SERVER_SOFTWARE",
        concat!("Kindling/", env!("CARGO_PKG_VERSION")).into(),
    );
    set("SERVER_PROTOCOL", format!("{:?}", parts.version));
    set("SERVER_NAME", server_name);
    set("SERVER_PORT", server_port);
    set("REQUEST_METHOD", parts.method.to_string());
    set("SCRIPT_NAME", info.script_name.clone());
    set("PATH_INFO", path.to_string());
    set("PATH_TRANSLATED", path.to_string());
    set("QUERY_STRING", query.to_string());
    set(
        "X_FULL_URL",
        format!(
            "http://{host}{}{}",
            info.script_name,
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        ),
    );
    set("X_MATCHED_ROUTE", info.script_name.clone());
    set("X_REQUEST_ID", info.invocation.request_id.to_string());
    set("AUTH_TYPE", String::new());
    set("REMOTE_USER", String::new());
    if let Some(remote) = info.remote_addr {
        set("REMOTE_ADDR", remote.ip().to_string());
        set("REMOTE_HOST", remote.ip().to_string());
    }
    if content_length > 0 || parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        set("CONTENT_LENGTH", content_length.to_string());
    }
    if let Some(content_type) = parts.headers.get(http::header::CONTENT_TYPE) {
        set(
            "CONTENT_TYPE",
            String::from_utf8_lossy(content_type.as_bytes()).into_owned(),
        );
    }

    // Each header becomes HTTP_<NAME>; repeated headers are joined with ", " (RFC 9110).
    for name in parts.headers.keys() {
        if name == http::header::CONTENT_LENGTH || name == http::header::CONTENT_TYPE {
            continue;
        }
        let value = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        set(&var, value);
    }
    env
}

/// Most header lines a WAGI response may have (the limit hyper puts on a request head).
const MAX_RESPONSE_HEADERS: usize = 100;

/// Largest header block a WAGI response may have, in bytes.
const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// Headers about the connection or the framing of a message: the node frames the body it
/// collected itself, so a module can never make a response look longer, shorter or like two.
const FRAMING_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Parses CGI output: header lines, a blank line, the body. `Status:` sets the status;
/// `Location:` without a status means 302, as CGI 1.1 says. Framing and hop-by-hop headers
/// are dropped; the body's length is what the module wrote.
fn parse_cgi_response(output: Bytes) -> Result<http::Response<ResponseBody>, InvokeError> {
    let (head_end, body_start) = find_blank_line(&output).ok_or_else(|| {
        InvokeError::BadCgiResponse(format!(
            "no blank line after the headers; a WAGI function prints headers (at least \
             `Content-Type: text/plain`), an empty line, then the body. It printed: {:?}",
            String::from_utf8_lossy(&output[..output.len().min(80)])
        ))
    })?;
    if head_end > MAX_RESPONSE_HEAD_BYTES {
        return Err(InvokeError::BadCgiResponse(format!(
            "the headers are {head_end} bytes, more than the {MAX_RESPONSE_HEAD_BYTES} a \
             response may have"
        )));
    }
    let head = std::str::from_utf8(&output[..head_end])
        .map_err(|_| InvokeError::BadCgiResponse("the headers are not UTF-8".into()))?;
    let lines = head.lines().count();
    if lines > MAX_RESPONSE_HEADERS {
        return Err(InvokeError::BadCgiResponse(format!(
            "{lines} header lines, more than the {MAX_RESPONSE_HEADERS} a response may have"
        )));
    }

    let mut response = http::Response::builder();
    let mut status = None;
    let mut has_location = false;
    for line in head.lines() {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            InvokeError::BadCgiResponse(format!("header line {line:?} has no `:`"))
        })?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            status = Some(
                code.parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| {
                        InvokeError::BadCgiResponse(format!("invalid Status header {value:?}"))
                    })?,
            );
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            InvokeError::BadCgiResponse(format!("invalid header name {:?}", name.trim()))
        })?;
        if FRAMING_HEADERS.contains(&name.as_str()) {
            tracing::debug!(header = %name, "dropped a framing header from CGI output");
            continue;
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| InvokeError::BadCgiResponse(format!("invalid value for header {name}")))?;
        has_location |= name == http::header::LOCATION;
        response = response.header(name, value);
    }
    let status = status.unwrap_or(if has_location {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    let body = Full::new(output.slice(body_start..))
        .map_err(|never| match never {})
        .boxed_unsync();
    response
        .status(status)
        .body(body)
        .map_err(|err| InvokeError::BadCgiResponse(err.to_string()))
}

/// Finds the end of the header block: returns (end of headers, start of body).
fn find_blank_line(output: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    while line_start < output.len() {
        let rest = &output[line_start..];
        let line_len = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..line_len];
        if line.is_empty() || line == b"\r" {
            return Some((line_start, line_start + line_len + 1));
        }
        line_start += line_len + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(text: &str) -> Result<(StatusCode, http::HeaderMap, String), InvokeError> {
        let response = parse_cgi_response(Bytes::from(text.to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok((status, headers, String::from_utf8(body.to_vec()).unwrap()))
    }

    #[tokio::test]
    async fn headers_then_body() {
        let (status, headers, body) =
            parse("Content-Type: text/plain\r\nX-A: 1\r\n\r\nhello\r\n\r\nworld")
                .await
                .unwrap();
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/plain");
        assert_eq!(headers["x-a"], "1");
        assert_eq!(body, "hello\r\n\r\nworld");
    }

    #[tokio::test]
    async fn status_and_location() {
        let (status, headers, _) = parse("Status: 404 Not Found\n\n").await.unwrap();
        assert_eq!(status, 404);
        assert!(headers.get("status").is_none());
        let (status, headers, _) = parse("Location: /elsewhere\n\n").await.unwrap();
        assert_eq!(status, 302);
        assert_eq!(headers["location"], "/elsewhere");
    }

    #[tokio::test]
    async fn output_cannot_frame_the_response() {
        let (status, headers, body) = parse(
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\
             X-Kept: yes\r\n\r\nHTTP/1.1 200 OK\r\n\r\nsmuggled",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        for dropped in ["content-length", "transfer-encoding", "connection"] {
            assert!(headers.get(dropped).is_none(), "{dropped} passed through");
        }
        assert_eq!(headers["x-kept"], "yes");
        assert_eq!(
            body, "HTTP/1.1 200 OK\r\n\r\nsmuggled",
            "the body is data, whole"
        );
    }

    #[tokio::test]
    async fn oversized_heads_are_refused() {
        let many = "X-A: 1\n".repeat(MAX_RESPONSE_HEADERS + 1) + "\n";
        let err = parse(&many).await.unwrap_err().to_string();
        assert!(err.contains("header lines"), "{err}");
        let long = format!("X-A: {}\n\n", "a".repeat(MAX_RESPONSE_HEAD_BYTES));
        let err = parse(&long).await.unwrap_err().to_string();
        assert!(err.contains("more than the"), "{err}");
    }

    #[tokio::test]
    async fn malformed_output_is_named() {
        let err = parse("just a body").await.unwrap_err().to_string();
        assert!(err.contains("no blank line"), "{err}");
        let err = parse("not a header\n\nbody").await.unwrap_err().to_string();
        assert!(err.contains("has no `:`"), "{err}");
        let err = parse("Status: teapot\n\n").await.unwrap_err().to_string();
        assert!(err.contains("invalid Status"), "{err}");
    }

    #[test]
    fn environment_follows_cgi() {
        let request = http::Request::post("/path/more?x=1&y=2")
            .header("host", "example.com:8080")
            .header("content-type", "application/json")
            .header("x-trace", "a")
            .header("x-trace", "b")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let info = RequestInfo {
            invocation: kindling_host::Invocation {
                function: "hello".into(),
                namespace: "default".into(),
                request_id: "r1".into(),
                log: None,
                trace: None,
                chain: kindling_host::CallChain::root(1),
                dispatch: None,
                response_headers: Default::default(),
            },
            script_name: "/hello".into(),
            remote_addr: Some("10.1.2.3:5555".parse().unwrap()),
            local_addr: None,
        };
        let function_env = vec![
            ("GREETING".to_string(), "hi".to_string()),
            ("PATH_INFO".to_string(), "/spoofed".to_string()),
        ];
        let env: std::collections::HashMap<_, _> = cgi_environment(&parts, 3, &info, &function_env)
            .into_iter()
            .collect();
        assert_eq!(env["REQUEST_METHOD"], "POST");
        assert_eq!(env["SCRIPT_NAME"], "/hello");
        assert_eq!(env["PATH_INFO"], "/path/more");
        assert_eq!(env["QUERY_STRING"], "x=1&y=2");
        assert_eq!(env["SERVER_NAME"], "example.com");
        assert_eq!(env["SERVER_PORT"], "8080");
        assert_eq!(env["CONTENT_LENGTH"], "3");
        assert_eq!(env["CONTENT_TYPE"], "application/json");
        assert_eq!(env["HTTP_X_TRACE"], "a, b");
        assert_eq!(env["REMOTE_ADDR"], "10.1.2.3");
        assert_eq!(env["GREETING"], "hi");
        assert_eq!(
            env["X_FULL_URL"],
            "http://example.com:8080/hello/path/more?x=1&y=2"
        );
        assert!(!env.contains_key("HTTP_CONTENT_TYPE"));
    }
}
