//! Test guest written against the raw `wasip2` bindings, one route per behaviour under test:
//!
//! - `/echo`: streams the request body back chunk by chunk as it arrives (full duplex)
//! - `/consume`: reads the whole request body, then answers with its length
//! - `/status/{code}`: answers with that status code
//! - `/stream/{n}`: writes `n` lines, flushing each
//! - `/trailers`: a body followed by trailers (announced in a `Trailer` header)
//! - `/request-trailers`: reads the request body and reports its trailers
//! - `/headers`: lists the request headers, one `name: value` per line
//! - `/env/{NAME}`: the value of an environment variable, 404 when unset
//! - `/request`: method, path with query, scheme and authority
//! - `/work/{n}`: burns CPU for `n` thousand rounds of hashing, then answers (load tests)

use std::io::{Read as _, Write as _};

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Guest;

wasip2::http::proxy::export!(Guest);

impl wasip2::exports::http::incoming_handler::Guest for Guest {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let path = path_with_query.split('?').next().unwrap_or_default().to_string();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["echo"] => echo(request, out),
            ["consume"] => {
                // Reads the whole body before answering (a failed read traps).
                let body = request.consume().expect("body is consumed once");
                let mut input = body.stream().expect("stream is taken once");
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut input, &mut bytes).expect("read request body");
                let text = format!("{} bytes\n", bytes.len());
                respond(out, 200, &[], text.as_bytes(), None)
            }
            ["status", code] => match code.parse() {
                Ok(code) => respond(out, code, &[], b"", None),
                Err(_) => respond(out, 400, &[], b"bad status code\n", None),
            },
            ["stream", n] => stream(out, n.parse().unwrap_or(3)),
            // HTTP/1.1 servers send only the trailer fields the head announces.
            ["trailers"] => respond(
                out,
                200,
                &[("trailer", "x-checksum")],
                b"body before trailers\n",
                Some(&[("x-checksum", "abc123")]),
            ),
            ["request-trailers"] => request_trailers(request, out),
            ["headers"] => {
                let mut text = String::new();
                for (name, value) in request.headers().entries() {
                    text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
                }
                respond(out, 200, &[], text.as_bytes(), None)
            }
            ["env", name] => match std::env::var(name) {
                Ok(value) => respond(out, 200, &[], value.as_bytes(), None),
                Err(_) => respond(out, 404, &[], b"unset", None),
            },
            ["work", n] => {
                let rounds: u64 = n.parse::<u64>().unwrap_or(1) * 1000;
                let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
                for i in 0..rounds {
                    hash = (hash ^ std::hint::black_box(i)).wrapping_mul(0x0100_0000_01b3);
                }
                respond(out, 200, &[], format!("{hash:016x}\n").as_bytes(), None)
            }
            ["request"] => {
                let text = format!(
                    "method: {:?}\npath: {}\nscheme: {:?}\nauthority: {}\n",
                    request.method(),
                    path_with_query,
                    request.scheme(),
                    request.authority().unwrap_or_default()
                );
                respond(out, 200, &[], text.as_bytes(), None)
            }
            _ => respond(out, 404, &[], b"no such route in http-wasip2\n", None),
        }
    }
}

fn respond(
    out: ResponseOutparam,
    status: u16,
    headers: &[(&str, &str)],
    body_bytes: &[u8],
    trailers: Option<&[(&str, &str)]>,
) {
    let response = OutgoingResponse::new(fields(headers));
    response.set_status_code(status).expect("valid status code");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().expect("stream is taken once");
    stream.write_all(body_bytes).expect("write body");
    std::io::Write::flush(&mut stream).expect("flush body");
    drop(stream);
    OutgoingBody::finish(body, trailers.map(fields)).expect("finish body");
}

fn fields(list: &[(&str, &str)]) -> Fields {
    let list: Vec<(String, Vec<u8>)> = list
        .iter()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    Fields::from_list(&list).expect("valid header fields")
}

fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let content_type = request.headers().get("content-type");
    let headers: Vec<(String, Vec<u8>)> = content_type
        .into_iter()
        .map(|value| ("content-type".to_string(), value))
        .collect();
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("valid headers"));
    let response_body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));

    let request_body = request.consume().expect("body is consumed once");
    let mut input = request_body.stream().expect("stream is taken once");
    let mut output = response_body.write().expect("stream is taken once");
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = std::io::Read::read(&mut input, &mut buffer).expect("read request body");
        if n == 0 {
            break;
        }
        output.write_all(&buffer[..n]).expect("write response body");
        std::io::Write::flush(&mut output).expect("flush response body");
    }
    drop(output);
    drop(input);
    OutgoingBody::finish(response_body, None).expect("finish response body");
}

fn stream(out: ResponseOutparam, lines: u32) {
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut output = body.write().expect("stream is taken once");
    for i in 0..lines {
        output.write_all(format!("line {i}\n").as_bytes()).expect("write line");
        std::io::Write::flush(&mut output).expect("flush line");
    }
    drop(output);
    OutgoingBody::finish(body, None).expect("finish body");
}

fn request_trailers(request: IncomingRequest, out: ResponseOutparam) {
    let body = request.consume().expect("body is consumed once");
    let mut input = body.stream().expect("stream is taken once");
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).expect("read request body");
    drop(input);
    let future = wasip2::http::types::IncomingBody::finish(body);
    future.subscribe().block();
    let mut text = format!("body bytes: {}\n", bytes.len());
    if let Some(Ok(Ok(Some(trailers)))) = future.get() {
        for (name, value) in trailers.entries() {
            text.push_str(&format!("trailer {name}: {}\n", String::from_utf8_lossy(&value)));
        }
    }
    respond(out, 200, &[], text.as_bytes(), None)
}
