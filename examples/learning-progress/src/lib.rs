//! Students' lesson progress, the case Kindling's edge mode was built for: a school site
//! records progress while its uplink is down, and every site and the hub end up with every
//! record. Deploy it with a key-value label marked `sync = "hub"` (see `README.md`):
//!
//! - `POST /progress/{class}/{student}/{lesson}` with a percentage (0-100) as the body:
//!   records it; progress never goes back, and reaching 100 counts a completed lesson for
//!   the student and the class (counters merge across sites without losing one)
//! - `GET /progress/{student}`: the student's lessons and completed count, as JSON
//! - `GET /classes/{class}`: the class's students and completed lessons, as JSON
//!
//! Every record is its own key (`p/{student}/{lesson}`), so two sites writing different
//! students or lessons never conflict; the same lesson written at two sites keeps the later
//! write (the store's last-writer-wins), and the counters add up.

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    path: "wit",
    world: "kindling-example:learning-progress/progress",
    generate_all,
});

use wasi::keyvalue::{atomics, store};

/// The key-value label the example uses; the node's runtime config marks it synced.
const LABEL: &str = "progress";

struct Progress;

wasip2::http::proxy::export!(Progress);

impl wasip2::exports::http::incoming_handler::Guest for Progress {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let answer = match store::open(LABEL) {
            Err(err) => Err((500, format!("cannot open the {LABEL:?} store: {err:?}"))),
            Ok(bucket) => match (request.method(), segments.as_slice()) {
                (Method::Post, ["progress", class, student, lesson]) => {
                    record(&bucket, class, student, lesson, &read_body(&request))
                }
                (Method::Get, ["progress", student]) => student_report(&bucket, student),
                (Method::Get, ["classes", class]) => class_report(&bucket, class),
                _ => Err((
                    404,
                    "routes: POST /progress/{class}/{student}/{lesson}, GET /progress/{student}, \
                     GET /classes/{class}"
                        .to_string(),
                )),
            },
        };
        match answer {
            Ok(json) => respond(out, 200, "application/json", json.as_bytes()),
            Err((status, text)) => respond(out, status, "text/plain", format!("{text}\n").as_bytes()),
        }
    }
}

type Answer = Result<String, (u16, String)>;

fn failed(err: store::Error) -> (u16, String) {
    (500, format!("the store failed: {err:?}"))
}

/// A name in a key: letters, digits, `-` and `_`, so that keys never run into each other.
fn checked<'a>(what: &str, name: &'a str) -> Result<&'a str, (u16, String)> {
    let fits = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        Ok(name)
    } else {
        Err((400, format!("the {what} {name:?} must be 1 to 64 letters, digits, '-' or '_'")))
    }
}

fn number(bytes: Option<Vec<u8>>) -> i64 {
    bytes
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

fn record(bucket: &store::Bucket, class: &str, student: &str, lesson: &str, body: &[u8]) -> Answer {
    let (class, student, lesson) = (
        checked("class", class)?,
        checked("student", student)?,
        checked("lesson", lesson)?,
    );
    let percent: i64 = std::str::from_utf8(body)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .filter(|p| (0..=100).contains(p))
        .ok_or((400, "the body must be a percentage from 0 to 100".to_string()))?;
    let key = format!("p/{student}/{lesson}");
    let before = number(bucket.get(&key).map_err(failed)?);
    let now = percent.max(before);
    bucket.set(&key, now.to_string().as_bytes()).map_err(failed)?;
    bucket
        .set(&format!("member/{class}/{student}"), b"1")
        .map_err(failed)?;
    if now == 100 && before < 100 {
        atomics::increment(bucket, &format!("done/{student}"), 1).map_err(failed)?;
        atomics::increment(bucket, &format!("class-done/{class}"), 1).map_err(failed)?;
    }
    Ok(format!(
        "{{\"student\":\"{student}\",\"lesson\":\"{lesson}\",\"percent\":{now}}}"
    ))
}

/// Every key under `prefix`, following the store's cursor.
fn keys_under(bucket: &store::Bucket, prefix: &str) -> Result<Vec<String>, (u16, String)> {
    // Kindling lists keys in order, and a draft2 cursor is the last key listed: start the
    // listing at the prefix and stop past it, instead of reading the whole store.
    let mut found = Vec::new();
    let mut cursor = Some(prefix.to_string());
    loop {
        let page = bucket.list_keys(cursor.as_deref()).map_err(failed)?;
        for key in page.keys {
            if !key.starts_with(prefix) {
                return Ok(found);
            }
            found.push(key);
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(found),
        }
    }
}

fn student_report(bucket: &store::Bucket, student: &str) -> Answer {
    let student = checked("student", student)?;
    let prefix = format!("p/{student}/");
    let mut lessons = Vec::new();
    for key in keys_under(bucket, &prefix)? {
        let percent = number(bucket.get(&key).map_err(failed)?);
        lessons.push(format!("\"{}\":{percent}", &key[prefix.len()..]));
    }
    let done = number(bucket.get(&format!("done/{student}")).map_err(failed)?);
    Ok(format!(
        "{{\"student\":\"{student}\",\"lessons\":{{{}}},\"completed\":{done}}}",
        lessons.join(",")
    ))
}

fn class_report(bucket: &store::Bucket, class: &str) -> Answer {
    let class = checked("class", class)?;
    let students = keys_under(bucket, &format!("member/{class}/"))?.len();
    let done = number(bucket.get(&format!("class-done/{class}")).map_err(failed)?);
    Ok(format!(
        "{{\"class\":\"{class}\",\"students\":{students},\"completed_lessons\":{done}}}"
    ))
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let Ok(body) = request.consume() else {
        return Vec::new();
    };
    let Ok(input) = body.stream() else {
        return Vec::new();
    };
    let mut bytes = Vec::new();
    // A percentage is a few bytes; anything past 64 is no percentage.
    while bytes.len() <= 64 {
        match input.blocking_read(64) {
            Ok(chunk) if !chunk.is_empty() => bytes.extend(chunk),
            _ => break,
        }
    }
    bytes
}

fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[content_type.as_bytes().to_vec()]);
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = std::io::Write::write_all(&mut stream, body);
        drop(stream);
    }
    let _ = OutgoingBody::finish(outgoing, None);
}
