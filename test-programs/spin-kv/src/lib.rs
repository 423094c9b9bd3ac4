//! Test guest written with the Spin SDK 5 (`#[http_component]`), the way Spin's own examples use
//! its key-value store:
//!
//! - `GET /get/{key}`: the value, 404 when unset
//! - `PUT /set/{key}` with a body: sets it
//! - `DELETE /delete/{key}`: removes it
//! - `GET /exists/{key}`: `true` or `false`
//! - `GET /keys`: every key, one a line
//! - `GET /open/{label}`: opens another store: `ok`, or the error
//! - `POST /count/{key}`: reads the number the key holds, adds one and writes it back (not
//!   atomic: Spin 2's interface has no increment)
//! - `GET /var/{name}`: the value of a Spin variable (`spin_sdk::variables`), 404 when undefined
//!
//! Every route but `/open` uses the `default` store.

use spin_sdk::http::{IntoResponse, Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::{Error, Store};

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    let answer = |status: u16, body: String| Response::builder().status(status).body(body).build();
    if let ["var", name] = segments.as_slice() {
        return Ok(match spin_sdk::variables::get(name) {
            Ok(value) => answer(200, value),
            Err(spin_sdk::variables::Error::Undefined(why)) => answer(404, format!("{why}\n")),
            Err(other) => answer(400, format!("{other:?}\n")),
        });
    }
    if let ["open", label] = segments.as_slice() {
        return Ok(match Store::open(label) {
            Ok(_) => answer(200, "ok\n".into()),
            Err(Error::AccessDenied) => answer(403, "access denied\n".into()),
            Err(Error::NoSuchStore) => answer(404, "no such store\n".into()),
            Err(other) => answer(500, format!("{other:?}\n")),
        });
    }
    let store = Store::open_default()?;
    Ok(match (request.method(), segments.as_slice()) {
        (Method::Get, ["get", key]) => match store.get(key)? {
            Some(value) => Response::builder().status(200).body(value).build(),
            None => answer(404, "unset\n".into()),
        },
        (Method::Put, ["set", key]) => match store.set(key, request.body()) {
            Ok(()) => answer(200, "set\n".into()),
            Err(Error::Other(why)) => answer(507, format!("{why}\n")),
            Err(other) => answer(500, format!("{other:?}\n")),
        },
        (Method::Delete, ["delete", key]) => {
            store.delete(key)?;
            answer(200, "deleted\n".into())
        }
        (Method::Get, ["exists", key]) => answer(200, format!("{}\n", store.exists(key)?)),
        (Method::Get, ["keys"]) => {
            let mut keys = store.get_keys()?;
            keys.sort();
            answer(200, keys.iter().map(|k| format!("{k}\n")).collect())
        }
        (Method::Post, ["count", key]) => {
            let current: u64 = store
                .get(key)?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            store.set(key, (current + 1).to_string().as_bytes())?;
            answer(200, format!("{}\n", current + 1))
        }
        _ => answer(404, "no such route in spin-kv\n".into()),
    })
}
