//! A `wasi:http/proxy` component written against the plain `wasip2` bindings.
//!
//! `GET /` greets; any other path answers with what the function saw of the request, which is
//! handy for checking how the gateway passes method, path, query and headers through.

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

wasip2::http::proxy::export!(Hello);

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let text = if path == "/" || path.is_empty() {
            "Hello from Kindling!\n".to_string()
        } else {
            let method = method_name(&request.method());
            let mut text = format!("Hello from Kindling!\nmethod: {method}\npath: {path}\n");
            for (name, value) in request.headers().entries() {
                if name.starts_with("x-") {
                    text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
                }
            }
            text
        };

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("static headers are valid");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let mut out = body.write().expect("stream is taken once");
        out.write_all(text.as_bytes()).expect("write response body");
        std::io::Write::flush(&mut out).expect("flush response body");
        drop(out);
        OutgoingBody::finish(body, None).expect("finish response body");
    }
}
