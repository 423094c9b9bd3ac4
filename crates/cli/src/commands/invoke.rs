//! `kindling invoke NAME [PATH]`: call a function through the gateway, as a client would, and
//! print the status, headers and body.

use std::collections::BTreeMap;
use std::io::Read;

use clap::Args;
use reqwest::Method;

use super::{OutputArgs, ServerArgs};
use crate::UsageError;
use crate::output::print_json;

#[derive(Debug, Args)]
pub(crate) struct InvokeCommand {
    /// The function
    name: String,
    /// Path and query passed to the function
    #[arg(default_value = "/")]
    path: String,
    /// HTTP method; POST when --data is given, GET otherwise
    #[arg(long, short = 'X')]
    method: Option<String>,
    /// Request body: text, @FILE to send a file, @- for standard input
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// A request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Queue the request and return at once (`Prefer: respond-async`); prints the
    /// invocation's id, for `kindling invocations show`
    #[arg(long = "async")]
    run_async: bool,
    /// Deduplicate: a second request with the same key within the node's window gets the
    /// first one's id (with --async)
    #[arg(long, requires = "run_async")]
    idempotency_key: Option<String>,
    /// Post the result to this URL when the invocation finishes (with --async)
    #[arg(long, requires = "run_async")]
    callback_url: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl InvokeCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let body = match self.data.as_deref() {
            None => Vec::new(),
            Some("@-") => {
                let mut body = Vec::new();
                std::io::stdin().read_to_end(&mut body)?;
                body
            }
            Some(data) => match data.strip_prefix('@') {
                Some(path) => std::fs::read(path)
                    .map_err(|err| UsageError(format!("cannot read --data @{path}: {err}")))?,
                None => data.as_bytes().to_vec(),
            },
        };
        let method = match &self.method {
            Some(method) => Method::from_bytes(method.to_uppercase().as_bytes())
                .map_err(|_| UsageError(format!("--method {method:?} is not an HTTP method")))?,
            None if self.data.is_some() => Method::POST,
            None => Method::GET,
        };
        let mut headers = Vec::new();
        for header in &self.headers {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                UsageError(format!("--header {header:?} must look like `Name: value`"))
            })?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        if self.run_async {
            headers.push(("prefer".into(), "respond-async".into()));
        }
        if let Some(key) = &self.idempotency_key {
            headers.push(("idempotency-key".into(), key.clone()));
        }
        if let Some(url) = &self.callback_url {
            headers.push(("x-callback-url".into(), url.clone()));
        }
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };

        let client = self.server.client()?;
        let response = client
            .invoke(method, &format!("/{}{path}", self.name), headers, body)
            .await?;
        let status = response.status();
        let version = response.version();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await?;

        if self.output.json {
            let headers: BTreeMap<_, _> = headers.into_iter().collect();
            return print_json(&serde_json::json!({
                "status": status.as_u16(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            }));
        }
        crate::output::outln!("{version:?} {status}");
        for (name, value) in headers {
            crate::output::outln!("{name}: {value}");
        }
        crate::output::outln!();
        crate::output::write_bytes(&body);
        if !body.ends_with(b"\n") && !body.is_empty() {
            crate::output::outln!();
        }
        Ok(())
    }
}
