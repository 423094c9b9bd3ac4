//! Test guest written with the Spin SDK 7 (`#[http_service]`, WASI 0.3: it exports
//! `wasi:http/handler@0.3.0`), using Spin 3's async key-value store and variables as Spin's own
//! examples do:
//!
//! - `GET /`: a greeting
//! - `POST /echo`: the request body, streamed back as it arrives
//! - `GET /stream/{n}`: `n` numbered lines, written by a task after the response head is sent
//! - `GET /var/{name}`: the value of a Spin variable, 404 when undefined
//! - `GET /kv/get/{key}`, `PUT /kv/set/{key}`, `DELETE /kv/delete/{key}`,
//!   `GET /kv/exists/{key}`, `GET /kv/keys`: the `default` store
//! - `GET /kv/open/{label}`: opens another store: `ok`, or the error
//! - `POST /sql/{label}` with a statement as the body: runs it through Spin 3.1's async SQLite
//!   (`execute-async`, rows as a stream); answers the columns and rows, values separated by `|`
//! - `POST /sql/{label}/insert` with a body: inserts it into `notes(body)` as a bound
//!   parameter; answers the new rowid and the rows changed

use futures::SinkExt;
use spin_sdk::http::body::{IncomingBodyExt, stream};
use spin_sdk::http::{IntoResponse, Method, Request, Response, StatusCode};
use spin_sdk::http_service;
use spin_sdk::key_value::{Error, Store};

fn answer(status: u16, body: impl Into<String>) -> Response<String> {
    let mut response = Response::new(body.into());
    *response.status_mut() = StatusCode::from_u16(status).expect("a valid status");
    response
}

#[http_service]
async fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(3, '/').collect();
    let method = request.method().clone();
    Ok(match (method, segments.as_slice()) {
        (Method::GET, [""]) => answer(200, "hello from spin 7\n").into_response(),
        (Method::POST, ["echo"]) => Response::new(request.into_body()).into_response(),
        (Method::GET, ["stream", n]) => {
            let lines: u32 = n.parse()?;
            let (mut tx, body) = stream::<String>();
            spin_sdk::wasip3::spawn(async move {
                for i in 0..lines {
                    if tx.send(format!("line {i}\n")).await.is_err() {
                        break;
                    }
                }
            });
            Response::new(body).into_response()
        }
        (Method::GET, ["var", name]) => match spin_sdk::variables::get(name).await {
            Ok(value) => answer(200, value),
            Err(spin_sdk::variables::Error::Undefined(why)) => answer(404, format!("{why}\n")),
            Err(other) => answer(400, format!("{other:?}\n")),
        }
        .into_response(),
        (Method::GET, ["kv", "open", label]) => match Store::open(label).await {
            Ok(_) => answer(200, "ok\n"),
            Err(Error::AccessDenied) => answer(403, "access denied\n"),
            Err(Error::NoSuchStore) => answer(404, "no such store\n"),
            Err(other) => answer(500, format!("{other:?}\n")),
        }
        .into_response(),
        (Method::POST, ["sql", rest @ ..]) => {
            let label = rest.first().copied().unwrap_or("default");
            let insert = rest.get(1) == Some(&"insert");
            let body = String::from_utf8_lossy(&request.into_body().bytes().await?).into_owned();
            sql(label, insert, body).await.into_response()
        }
        (method, ["kv", op, rest @ ..]) => {
            let store = Store::open_default().await?;
            let key = rest.first().copied().unwrap_or_default();
            match (method, *op) {
                (Method::GET, "get") => match store.get(key).await? {
                    Some(value) => value.into_response(),
                    None => answer(404, "unset\n").into_response(),
                },
                (Method::PUT, "set") => {
                    let value = request.into_body().bytes().await?;
                    match store.set(key, &value).await {
                        Ok(()) => answer(200, "set\n"),
                        Err(Error::Other(why)) => answer(507, format!("{why}\n")),
                        Err(other) => answer(500, format!("{other:?}\n")),
                    }
                    .into_response()
                }
                (Method::DELETE, "delete") => {
                    store.delete(key).await?;
                    answer(200, "deleted\n").into_response()
                }
                (Method::GET, "exists") => {
                    answer(200, format!("{}\n", store.exists(key).await?)).into_response()
                }
                (Method::GET, "keys") => {
                    let mut keys = store.get_keys().await.collect().await?;
                    keys.sort();
                    let listing: String = keys.iter().map(|key| format!("{key}\n")).collect();
                    answer(200, listing).into_response()
                }
                _ => answer(404, "no such route\n").into_response(),
            }
        }
        _ => answer(404, "no such route\n").into_response(),
    })
}

async fn sql(label: &str, insert: bool, body: String) -> Response<String> {
    use spin_sdk::sqlite::{Connection, Error as SqlError, Value};
    let conn = match Connection::open(label).await {
        Ok(conn) => conn,
        Err(SqlError::AccessDenied) => return answer(403, "access denied\n"),
        Err(other) => return answer(500, format!("{other:?}\n")),
    };
    let result = if insert {
        conn.execute("INSERT INTO notes (body) VALUES (?)", [Value::Text(body)])
            .await
    } else {
        conn.execute(body, []).await
    };
    let result = match result {
        Ok(result) => result,
        Err(SqlError::DatabaseFull) => return answer(507, "database full\n"),
        Err(SqlError::Io(why)) => return answer(400, format!("{why}\n")),
        Err(other) => return answer(500, format!("{other:?}\n")),
    };
    let columns = result.columns().join("|");
    let rows = match result.collect().await {
        Ok(rows) => rows,
        Err(err) => return answer(500, format!("{err:?}\n")),
    };
    if insert {
        let rowid = conn.last_insert_rowid().await;
        let changes = conn.changes().await;
        return answer(200, format!("{rowid} {changes}\n"));
    }
    let mut text = columns + "\n";
    for row in rows {
        let values: Vec<String> = row
            .values
            .iter()
            .map(|value| match value {
                Value::Integer(i) => i.to_string(),
                Value::Real(f) => f.to_string(),
                Value::Text(s) => s.clone(),
                Value::Blob(b) => format!("{} bytes", b.len()),
                Value::Null => "NULL".to_string(),
            })
            .collect();
        text += &(values.join("|") + "\n");
    }
    answer(200, text)
}
