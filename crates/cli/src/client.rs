//! The admin API client used by every command except `serve`. Errors carry the server's own
//! message, so the user sees why a deploy was refused, not just a status code.

use anyhow::{Context, anyhow};
use kindling_gateway::ErrorBody;
use kindling_gateway::api::{DeployResponse, FunctionInfo, LogsResponse, RollbackRequest};
use kindling_registry::{FunctionConfig, VersionRecord};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A connection to one node's admin API.
pub(crate) struct Client {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct FunctionList {
    functions: Vec<FunctionInfo>,
}

#[derive(Deserialize)]
struct VersionList {
    versions: Vec<VersionRecord>,
}

impl Client {
    pub(crate) fn new(server: &str) -> anyhow::Result<Self> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(crate::UsageError(format!(
                "--server {server:?} must be a URL such as http://127.0.0.1:3000"
            ))
            .into());
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("kindling-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { base, http })
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    pub(crate) async fn functions(&self) -> anyhow::Result<Vec<FunctionInfo>> {
        let list: FunctionList = self.get_json("/v1/functions").await?;
        Ok(list.functions)
    }

    pub(crate) async fn function(&self, name: &str) -> anyhow::Result<FunctionInfo> {
        self.get_json(&format!("/v1/functions/{name}")).await
    }

    /// A page of the function's guest output; `wait` seconds of long poll for new lines.
    pub(crate) async fn logs(
        &self,
        name: &str,
        after: u64,
        since_ms: u64,
        limit: usize,
        wait: u64,
    ) -> anyhow::Result<LogsResponse> {
        self.get_json(&format!(
            "/v1/functions/{name}/logs?after={after}&since_ms={since_ms}&limit={limit}&wait={wait}"
        ))
        .await
    }

    pub(crate) async fn versions(&self, name: &str) -> anyhow::Result<Vec<VersionRecord>> {
        let list: VersionList = self
            .get_json(&format!("/v1/functions/{name}/versions"))
            .await?;
        Ok(list.versions)
    }

    pub(crate) async fn deploy(
        &self,
        name: &str,
        module: Vec<u8>,
        config: &FunctionConfig,
    ) -> anyhow::Result<DeployResponse> {
        let form = reqwest::multipart::Form::new()
            .part(
                "config",
                reqwest::multipart::Part::text(serde_json::to_string(config)?)
                    .mime_str("application/json")?,
            )
            .part(
                "module",
                reqwest::multipart::Part::bytes(module)
                    .file_name(format!("{name}.wasm"))
                    .mime_str("application/wasm")?,
            );
        let url = self.url(&format!("/v1/functions/{name}/versions"));
        let response = self
            .send(self.http.post(&url).multipart(form), &url)
            .await?;
        decode(response).await
    }

    pub(crate) async fn rollback(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> anyhow::Result<FunctionInfo> {
        let url = self.url(&format!("/v1/functions/{name}/rollback"));
        let body = RollbackRequest { version };
        let response = self.send(self.http.post(&url).json(&body), &url).await?;
        decode(response).await
    }

    pub(crate) async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let url = self.url(&format!("/v1/functions/{name}"));
        let response = self.send(self.http.delete(&url), &url).await?;
        if response.status() == StatusCode::NO_CONTENT {
            Ok(())
        } else {
            Err(server_error(response).await)
        }
    }

    /// The key-value stores opened so far.
    pub(crate) async fn kv_stores(&self) -> anyhow::Result<Vec<kindling_gateway::StoreInfo>> {
        self.get_json("/v1/kv").await
    }

    /// A page of a store's keys.
    pub(crate) async fn kv_keys(
        &self,
        store: &str,
        after: Option<&str>,
    ) -> anyhow::Result<kindling_gateway::KeysPage> {
        let after = after.map_or_else(String::new, |a| format!("?after={}", encode(a)));
        self.get_json(&format!("/v1/kv/{store}{after}")).await
    }

    /// A key's value; `None` when it is not set.
    pub(crate) async fn kv_get(&self, store: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let url = self.url(&format!("/v1/kv/{store}/{}", encode(key)));
        let response = self.send(self.http.get(&url), &url).await?;
        match response.status() {
            StatusCode::OK => Ok(Some(response.bytes().await?.to_vec())),
            StatusCode::NOT_FOUND => {
                let error = server_error(response).await;
                if error.to_string().contains("has no key") {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
            _ => Err(server_error(response).await),
        }
    }

    /// Sets or (with `None`) removes a key.
    pub(crate) async fn kv_put(
        &self,
        store: &str,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> anyhow::Result<()> {
        let url = self.url(&format!("/v1/kv/{store}/{}", encode(key)));
        let request = match value {
            Some(value) => self.http.put(&url).body(value),
            None => self.http.delete(&url),
        };
        let response = self.send(request, &url).await?;
        if response.status() == StatusCode::NO_CONTENT {
            Ok(())
        } else {
            Err(server_error(response).await)
        }
    }

    /// The SQLite databases opened so far.
    pub(crate) async fn sqlite_databases(
        &self,
    ) -> anyhow::Result<Vec<kindling_gateway::DatabaseInfo>> {
        self.get_json("/v1/sqlite").await
    }

    /// Runs one statement on `NAMESPACE/LABEL`'s database.
    pub(crate) async fn sqlite_execute(
        &self,
        database: &str,
        statement: &kindling_gateway::Statement,
    ) -> anyhow::Result<kindling_gateway::Answer> {
        let url = self.url(&format!("/v1/sqlite/{database}"));
        let response = self
            .send(self.http.post(&url).json(statement), &url)
            .await?;
        decode(response).await
    }

    /// Sends a request through the gateway to a function, returning the raw response.
    pub(crate) async fn invoke(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> anyhow::Result<Response> {
        let url = self.url(path);
        let mut request = self.http.request(method, &url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.send(request, &url).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self.send(self.http.get(&url), &url).await?;
        decode(response).await
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Response> {
        request.send().await.map_err(|err| {
            let hint = if err.is_connect() {
                format!(
                    "; is `kindling serve` running there? Point --server (or KINDLING_SERVER) at \
                     the node, currently {}",
                    self.base
                )
            } else {
                String::new()
            };
            anyhow!("cannot reach {url}: {err}{hint}")
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

async fn decode<T: DeserializeOwned>(response: Response) -> anyhow::Result<T> {
    if !response.status().is_success() {
        return Err(server_error(response).await);
    }
    let url = response.url().to_string();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer from {url}"))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{url} answered with something that is not the expected JSON; is it a Kindling node?"
        )
    })
}

/// Turns an error response into an error carrying the server's message.
async fn server_error(response: Response) -> anyhow::Error {
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => anyhow!("{} ({status})", body.error.message),
        Err(_) => anyhow!(
            "the server answered {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ),
    }
}

/// Percent-encodes a key or query value for a URL path or query.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
