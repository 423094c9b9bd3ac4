//! A hostile WAGI guest. `PATH_INFO` picks the attack:
//!
//! - `/stdin-forever`: keeps reading stdin after it has ended
//! - `/read-file`: reads the file named by `QUERY_STRING`
//! - `/env`: prints every environment variable it can see
//! - `/no-headers`: prints a body without CGI headers
//! - `/huge/{mib}`: prints that many MiB
//! - `/smuggle`: `Content-Length: 0`, then a body shaped like a second response
//! - `/short-length`: `Content-Length: 2` and a longer body
//! - `/chunked`: claims `Transfer-Encoding: chunked` and prints a plain body
//! - `/many-headers`: 1,000 header lines
//! - `/long-header`: one header of 100 KB
//! - `/fail-after-output`: prints a whole response, then exits with status 3
//! - anything else: echoes the body length

use std::io::{Read as _, Write as _};

fn main() {
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let mut out = std::io::stdout().lock();
    match path.as_str() {
        "/stdin-forever" => {
            let mut buffer = [0u8; 4096];
            let mut total = 0usize;
            loop {
                total += std::io::stdin().read(&mut buffer).unwrap_or(0);
                std::hint::black_box(total);
            }
        }
        "/read-file" => {
            let text = match std::fs::read_to_string(&query) {
                Ok(text) => format!("read {} bytes:\n{text}", text.len()),
                Err(err) => format!("error: {err}"),
            };
            write!(out, "Content-Type: text/plain\n\n{text}\n").unwrap();
        }
        "/env" => {
            write!(out, "Content-Type: text/plain\n\n").unwrap();
            for (key, value) in std::env::vars() {
                writeln!(out, "{key}={value}").unwrap();
            }
        }
        "/no-headers" => write!(out, "just a body, no headers").unwrap(),
        huge if huge.starts_with("/huge/") => {
            let mib: usize = huge["/huge/".len()..].parse().unwrap_or(1);
            write!(out, "Content-Type: text/plain\n\n").unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..mib * 16 {
                if out.write_all(&chunk).is_err() {
                    std::process::exit(1);
                }
            }
        }
        "/smuggle" => write!(
            out,
            "Content-Length: 0\n\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
        )
        .unwrap(),
        "/short-length" => write!(out, "Content-Length: 2\n\nmuch longer than two").unwrap(),
        "/chunked" => write!(out, "Transfer-Encoding: chunked\n\nnot chunked at all").unwrap(),
        "/many-headers" => {
            for i in 0..1000 {
                writeln!(out, "X-Header-{i}: {i}").unwrap();
            }
            write!(out, "\nbody").unwrap();
        }
        "/long-header" => write!(out, "X-Long: {}\n\nbody", "a".repeat(100 * 1024)).unwrap(),
        "/fail-after-output" => {
            write!(out, "Content-Type: text/plain\n\nlooks complete\n").unwrap();
            out.flush().unwrap();
            std::process::exit(3);
        }
        _ => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).unwrap();
            write!(out, "Content-Type: text/plain\n\nbody bytes: {}\n", body.len()).unwrap();
        }
    }
}
