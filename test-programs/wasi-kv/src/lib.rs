//! Test guest: `wasi:keyvalue` and `wasi:config` through bindings wit-bindgen generates from
//! the interfaces' WIT; key-value at `0.2.0-draft2` (Spin's, under `/d2/`) and `0.2.0-draft`
//! (wasmCloud's, under `/d1/`):
//!
//! - `/d2/get/{key}`, `PUT /d2/set/{key}`: read and write in the `default` bucket
//! - `/d2/increment/{key}`, `/d1/increment/{key}`: add one atomically; answers the new value
//! - `/d2/flaky/{key}/{n}`: adds one to `key` and fails (500) while the count is at most `n`:
//!   a function that fails `n` times, then succeeds
//! - `/d2/cas/{key}/{value}`: compare-and-swap from what was read: `swapped` or `changed`
//! - `/d2/batch`, `/d1/batch`: `set-many` a=1, b=2, then `get-many` a, b, c
//! - `/d2/list`, `/d1/list`: every key, following the cursor page by page
//! - `/d2/open/{label}`: opens another bucket: `ok`, or the error
//! - `/config/{key}`, `/config-rc1/{key}`: a value of `wasi:config/store` at
//!   `0.2.0-draft-2024-09-27` (Spin) and `0.2.0-rc.1` (wasmCloud 2), 404 when unset;
//!   `/config-all`: every key and value

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

// The interfaces' WIT is the host's own (`wit/deps` links to the capabilities' copies).
wit_bindgen::generate!({
    path: "wit",
    world: "test:wasi-kv/guest",
    generate_all,
});

use wasi::keyvalue0_2_0_draft as d1;
use wasi::keyvalue0_2_0_draft2 as d2;

struct Guest;

wasip2::http::proxy::export!(Guest);

impl wasip2::exports::http::incoming_handler::Guest for Guest {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (status, body) = match (request.method(), segments.as_slice()) {
            (_, ["d2", "open", label]) => match d2::store::open(label) {
                Ok(_) => (200, "ok\n".to_string()),
                Err(err) => (403, format!("{err:?}\n")),
            },
            (method, ["d2", rest @ ..]) => draft2(method, rest, &request),
            (_, ["config", key]) => match wasi::config0_2_0_draft_2024_09_27::store::get(key) {
                Ok(Some(value)) => (200, value),
                Ok(None) => (404, "unset\n".into()),
                Err(err) => (500, format!("{err:?}\n")),
            },
            (_, ["config-rc1", key]) => match wasi::config0_2_0_rc_1::store::get(key) {
                Ok(Some(value)) => (200, value),
                Ok(None) => (404, "unset\n".into()),
                Err(err) => (500, format!("{err:?}\n")),
            },
            (_, ["config-all"]) => match wasi::config0_2_0_draft_2024_09_27::store::get_all() {
                Ok(all) => (200, all.iter().map(|(k, v)| format!("{k}={v}\n")).collect()),
                Err(err) => (500, format!("{err:?}\n")),
            },
            (_, ["d1", rest @ ..]) => draft(rest),
            _ => (404, "no such route in wasi-kv\n".into()),
        };
        respond(out, status, body.as_bytes());
    }
}

fn draft2(method: Method, route: &[&str], request: &IncomingRequest) -> (u16, String) {
    let bucket = match d2::store::open("default") {
        Ok(bucket) => bucket,
        Err(err) => return (500, format!("{err:?}\n")),
    };
    let result: Result<(u16, String), d2::store::Error> = (|| match (method, route) {
        (Method::Get, ["get", key]) => Ok(match bucket.get(key)? {
            Some(value) => (200, String::from_utf8_lossy(&value).into_owned()),
            None => (404, "unset\n".into()),
        }),
        (Method::Put, ["set", key]) => {
            bucket.set(key, &read_body(request))?;
            Ok((200, "set\n".into()))
        }
        (_, ["increment", key]) => Ok((200, format!("{}\n", d2::atomics::increment(&bucket, key, 1)?))),
        (_, ["flaky", key, n]) => {
            let count = d2::atomics::increment(&bucket, key, 1)?;
            let n: i64 = n.parse().unwrap_or(0);
            Ok(if count <= n {
                (500, format!("failing, attempt {count}\n"))
            } else {
                (200, format!("ok after {count} attempts\n"))
            })
        }
        (_, ["cas", key, value]) => {
            let cas = d2::atomics::Cas::new(&bucket, key)?;
            Ok(match d2::atomics::swap(cas, value.as_bytes()) {
                Ok(()) => (200, "swapped\n".into()),
                Err(d2::atomics::CasError::CasFailed(_)) => (409, "changed\n".into()),
                Err(d2::atomics::CasError::StoreError(err)) => (500, format!("{err:?}\n")),
            })
        }
        (_, ["batch"]) => {
            d2::batch::set_many(&bucket, &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())])?;
            let got = d2::batch::get_many(&bucket, &["a".into(), "b".into(), "c".into()])?;
            let text = got
                .into_iter()
                .map(|(key, value)| match value {
                    Some(value) => format!("{key}={}\n", String::from_utf8_lossy(&value)),
                    None => format!("{key} unset\n"),
                })
                .collect();
            Ok((200, text))
        }
        (_, ["list"]) => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor.as_deref())?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Ok((200, keys.iter().map(|k| format!("{k}\n")).collect()))
        }
        _ => Ok((404, "no such draft2 route\n".into())),
    })();
    result.unwrap_or_else(|err| (500, format!("{err:?}\n")))
}

fn draft(route: &[&str]) -> (u16, String) {
    let bucket = match d1::store::open("default") {
        Ok(bucket) => bucket,
        Err(err) => return (500, format!("{err:?}\n")),
    };
    let result: Result<(u16, String), d1::store::Error> = (|| match route {
        ["increment", key] => Ok((200, format!("{}\n", d1::atomics::increment(&bucket, key, 1)?))),
        ["batch"] => {
            d1::batch::set_many(&bucket, &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())])?;
            let got = d1::batch::get_many(&bucket, &["a".into(), "b".into(), "c".into()])?;
            let text = got
                .into_iter()
                .map(|pair| match pair {
                    Some((key, value)) => format!("{key}={}\n", String::from_utf8_lossy(&value)),
                    None => "unset\n".to_string(),
                })
                .collect();
            Ok((200, text))
        }
        ["list"] => {
            let mut keys = Vec::new();
            let mut cursor = None;
            loop {
                let page = bucket.list_keys(cursor)?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            Ok((200, keys.iter().map(|k| format!("{k}\n")).collect()))
        }
        _ => Ok((404, "no such draft route\n".into())),
    })();
    result.unwrap_or_else(|err| (500, format!("{err:?}\n")))
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("body is consumed once");
    let mut input = body.stream().expect("stream is taken once");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut input, &mut bytes).expect("read the body");
    bytes
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let mut stream = outgoing.write().expect("stream is taken once");
    std::io::Write::write_all(&mut stream, body).expect("write the body");
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}
