//! Test guest: a `wasi:http` component that imports Spin's LLM interface, which Kindling does
//! not provide. Refused at deploy unless deployed with `--allow-unsupported-imports`; then:
//!
//! - `GET /`: answers without touching the LLM
//! - `GET /llm`: calls the LLM import, which traps

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    path: "wit",
    world: "test:unsupported-imports/guest",
    generate_all,
});

struct Guest;

wasip2::http::proxy::export!(Guest);

impl wasip2::exports::http::incoming_handler::Guest for Guest {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let body = if path == "/llm" {
            let embeddings =
                fermyon::spin::llm::generate_embeddings("all-minilm-l6-v2", &["hi".to_string()]);
            format!("{} embeddings\n", embeddings.map(|e| e.len()).unwrap_or(0))
        } else {
            "serving without the llm\n".to_string()
        };
        let response = OutgoingResponse::new(Fields::new());
        let outgoing = response.body().expect("body is taken once");
        ResponseOutparam::set(out, Ok(response));
        let mut stream = outgoing.write().expect("stream is taken once");
        std::io::Write::write_all(&mut stream, body.as_bytes()).expect("write the body");
        drop(stream);
        let _ = OutgoingBody::finish(outgoing, None);
    }
}
