//! A WAGI function: a plain WASI preview 1 command, spoken to through CGI 1.1.
//!
//! The request line and headers arrive as environment variables (`REQUEST_METHOD`,
//! `PATH_INFO`, `QUERY_STRING`, `HTTP_*`), the body on stdin; the response is CGI headers, a
//! blank line and the body on stdout; stderr is its log. This one greets and echoes the body
//! back, and logs each request.

use std::io::{Read as _, Write as _};

fn main() {
    let method = std::env::var("REQUEST_METHOD").unwrap_or_default();
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let query = std::env::var("QUERY_STRING").unwrap_or_default();

    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body).expect("read request body");

    // stderr is the function's log: `kindling logs NAME` shows it with the request id.
    eprintln!("handled {method} {path}");

    let mut out = std::io::stdout().lock();
    write!(out, "Content-Type: text/plain; charset=utf-8\r\n\r\n").unwrap();
    writeln!(out, "Hello from a Kindling WAGI function!").unwrap();
    writeln!(out, "method: {method}\npath: {path}\nquery: {query}").unwrap();
    if !body.is_empty() {
        writeln!(out, "body: {}", String::from_utf8_lossy(&body)).unwrap();
    }
}
