//! Test guest written with `wstd`'s async `#[http_server]`:
//!
//! - `/sleep/{ms}`: sleeps on `wasi:clocks` without blocking the host, then answers, with
//!   the wall-clock time it started (Unix nanoseconds) in `x-started-at`
//! - `/echo`: answers with the request body
//! - anything else: a greeting that names the method and path

use wstd::http::body::Body;
use wstd::http::{Error, Request, Response, StatusCode};
use wstd::time::Duration;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let Ok(ms) = ms.parse::<u64>() else {
            return Ok(Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Body::from("sleep wants milliseconds\n"))?);
        };
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        wstd::task::sleep(Duration::from_millis(ms)).await;
        return Ok(Response::builder()
            .header("x-started-at", started.to_string())
            .body(Body::from(format!("slept {ms} ms\n")))?);
    }
    if path == "/echo" {
        return Ok(Response::new(request.into_body()));
    }
    Ok(Response::new(Body::from(format!(
        "hello from wstd: {} {path}\n",
        request.method()
    ))))
}
