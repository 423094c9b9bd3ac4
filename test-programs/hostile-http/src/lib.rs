//! A hostile `wasi:http` guest. Each route tries one way of hurting the host or escaping the
//! sandbox; the hostile-guest suite asserts that each is stopped and named.
//!
//! - `/ok`: a well-behaved answer, to show the instance works at all
//! - `/loop`: spins forever
//! - `/recurse`: recurses until WebAssembly's call stack runs out
//! - `/deep-stack`: recurses with big frames until the shadow stack in linear memory runs out
//! - `/memory-bomb`: allocates 1 MiB blocks until allocation fails
//! - `/allocate/{mib}`: allocates and touches that much memory, then answers
//! - `/huge-response/{mib}`: streams that many MiB
//! - `/endless`: writes a line every 10 ms, forever
//! - `/panic`, `/unreachable`: fail on purpose
//! - `/read-file?{path}`: reads a file, `/list-dir?{path}`: lists a directory,
//!   `/write-file?{path}`: tries to create one
//! - `/env`: every environment variable it can see
//! - `/socket?{host:port}`: opens a TCP connection
//! - `/outbound?{authority}`: makes an HTTP request to `http://{authority}/`
//! - `/fan/{n}/{depth}?{authority}`: calls `http://{authority}/fan/{n}/{depth - 1}` `n` times,
//!   until depth 0: a fan-out of `n` to the power `depth` calls if nothing stops it

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

struct Guest;

wasip2::http::proxy::export!(Guest);

impl wasip2::exports::http::incoming_handler::Guest for Guest {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((path_with_query.as_str(), ""));
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["ok"] => respond(out, 200, "ok\n"),
            ["loop"] => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            ["recurse"] => respond(out, 200, &format!("{}", recurse(std::hint::black_box(1)))),
            ["deep-stack"] => respond(out, 200, &format!("{}", deep_stack(std::hint::black_box(1)))),
            ["memory-bomb"] => {
                let mut blocks = Vec::new();
                loop {
                    let mut block = vec![0u8; 1 << 20];
                    block[0] = 1;
                    blocks.push(std::hint::black_box(block));
                }
            }
            ["allocate", mib] => {
                let mib: usize = mib.parse().unwrap_or(1);
                let mut block = vec![0u8; mib << 20];
                for page in block.chunks_mut(4096) {
                    page[0] = 1;
                }
                let touched: usize = block.iter().step_by(4096).map(|&b| b as usize).sum();
                respond(out, 200, &format!("allocated {mib} MiB, touched {touched} pages\n"))
            }
            ["huge-response", mib] => {
                let mib: usize = mib.parse().unwrap_or(1);
                stream(out, |body| {
                    let chunk = vec![b'x'; 64 * 1024];
                    for _ in 0..mib * 16 {
                        if body.write_all(&chunk).is_err() || body.flush().is_err() {
                            return;
                        }
                    }
                })
            }
            ["endless"] => stream(out, |body| {
                for i in 0.. {
                    if body.write_all(format!("line {i}\n").as_bytes()).is_err()
                        || body.flush().is_err()
                    {
                        return;
                    }
                    let pollable = wasip2::clocks::monotonic_clock::subscribe_duration(10_000_000);
                    pollable.block();
                }
            }),
            ["panic"] => panic!("this guest panics on purpose"),
            ["unreachable"] => core::arch::wasm32::unreachable(),
            ["read-file"] => respond(out, 200, &match std::fs::read_to_string(query) {
                Ok(text) => format!("read {} bytes:\n{text}", text.len()),
                Err(err) => format!("error: {err}\n"),
            }),
            ["list-dir"] => respond(out, 200, &match std::fs::read_dir(query) {
                Ok(entries) => entries
                    .filter_map(|e| e.ok())
                    .map(|e| format!("{}\n", e.file_name().to_string_lossy()))
                    .collect(),
                Err(err) => format!("error: {err}\n"),
            }),
            ["write-file"] => respond(out, 200, &match std::fs::write(query, b"pwned") {
                Ok(()) => "wrote it\n".to_string(),
                Err(err) => format!("error: {err}\n"),
            }),
            ["env"] => respond(
                out,
                200,
                &std::env::vars().map(|(k, v)| format!("{k}={v}\n")).collect::<String>(),
            ),
            ["socket"] => respond(out, 200, &match std::net::TcpStream::connect(query) {
                Ok(_) => "connected\n".to_string(),
                Err(err) => format!("error: {err}\n"),
            }),
            ["outbound"] => respond(out, 200, &outbound(query)),
            ["fan", n, depth] => {
                let (n, depth) = (n.parse().unwrap_or(0u32), depth.parse().unwrap_or(0u32));
                let mut answers = String::new();
                if depth > 0 {
                    for _ in 0..n {
                        let call = format!("{query}/fan/{n}/{}?{query}", depth - 1);
                        answers.push_str(&outbound(&call));
                    }
                }
                respond(out, 200, &answers)
            }
            _ => respond(out, 404, "no such attack\n"),
        }
    }
}

/// Only scalars: every frame lives on WebAssembly's own call stack.
#[expect(unconditional_recursion, reason = "exhausting the stack is the point")]
fn recurse(depth: u64) -> u64 {
    recurse(std::hint::black_box(depth + 1)).wrapping_add(depth)
}

/// An address-taken array: every frame lives on the shadow stack in linear memory.
#[expect(unconditional_recursion, reason = "exhausting the stack is the point")]
fn deep_stack(depth: u64) -> u64 {
    let mut frame = [depth; 64];
    std::hint::black_box(&mut frame);
    deep_stack(depth + 1) + frame[7]
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().expect("stream is taken once");
    stream.write_all(text.as_bytes()).expect("write body");
    std::io::Write::flush(&mut stream).expect("flush body");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish body");
}

fn stream(out: ResponseOutparam, write: impl FnOnce(&mut wasip2::io::streams::OutputStream)) {
    let response = OutgoingResponse::new(Fields::new());
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = body.write().expect("stream is taken once");
    write(&mut stream);
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

/// GET `http://{target}`, where `target` is an authority and optionally a path and query
/// (`b.fn.local/outbound?c.fn.local` chains a call through two more functions).
fn outbound(target: &str) -> String {
    let (authority, path) = match target.find('/') {
        Some(slash) => (&target[..slash], &target[slash..]),
        None => (target, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(path));
    let body = request.body().expect("body is taken once");
    let future = match wasip2::http::outgoing_handler::handle(request, None) {
        Ok(future) => future,
        Err(code) => return format!("denied: {code:?}\n"),
    };
    let _ = OutgoingBody::finish(body, None);
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => format!("status: {}\n", response.status()),
        Some(Ok(Err(code))) => format!("denied: {code:?}\n"),
        other => format!("error: {other:?}\n"),
    }
}
