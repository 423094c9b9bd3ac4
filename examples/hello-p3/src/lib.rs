//! A WASI 0.3 HTTP component (it exports `wasi:http/handler@0.3.0`), written as the Spin SDK 7
//! documents it: an async handler behind `#[http_service]`. Unmodified Spin code: the same
//! source runs under `spin up`.

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

#[http_service]
async fn hello(request: Request) -> impl IntoResponse {
    if request.uri().path() == "/" {
        "Hello from Kindling, over WASI 0.3!\n".to_string()
    } else {
        format!("{} {}\n", request.method(), request.uri().path())
    }
}
