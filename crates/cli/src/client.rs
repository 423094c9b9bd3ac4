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
    /// `Bearer TOKEN`, sent on every admin request when there is a token.
    authorization: Option<String>,
    /// Whether the token was given (`--token`, `KINDLING_TOKEN`) rather than found in a local
    /// data directory: only a given token is sent to functions.
    explicit: bool,
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
    /// A client that presents `token`, or, for a node on this machine, the admin token its
    /// data directory holds (`KINDLING_DATA_DIR`, else `./.kindling`). The local file is never
    /// sent to a node elsewhere.
    pub(crate) fn with_credentials(
        server: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let given = token.filter(|t| !t.trim().is_empty());
        let explicit = given.is_some();
        let token = given.or_else(|| local_admin_token(server));
        let mut client = Self::build(server, token, ca_cert)?;
        client.explicit = explicit;
        Ok(client)
    }

    fn build(
        server: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let base = server.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(crate::UsageError(format!(
                "--server {server:?} must be a URL such as http://127.0.0.1:3000"
            ))
            .into());
        }
        // No redirects: the admin API never sends one, and a function's redirect must not
        // carry the token anywhere else (`kindling invoke`).
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kindling-cli/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|err| {
                crate::UsageError(format!("cannot read --ca-cert {}: {err}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
                crate::UsageError(format!(
                    "--ca-cert {} is not a PEM certificate: {err}",
                    path.display()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("cannot build the HTTP client")?;
        let authorization = token.map(|t| format!("Bearer {}", t.trim()));
        Ok(Self {
            base,
            http,
            authorization,
            explicit: false,
        })
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
        // A function deployed with `--auth token` needs a token; the node's own admin token,
        // found on disk, is never volunteered to a function.
        if self.explicit
            && let Some(value) = &self.authorization
        {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.send_as_is(request, &url).await
    }

    /// Sends `body` as JSON with `method` to `path` and decodes the JSON answer.
    pub(crate) async fn send_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<T> {
        let url = self.url(path);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        decode(self.send(request, &url).await?).await
    }

    /// Sends a text body (a policy) with PUT and decodes the JSON answer.
    pub(crate) async fn put_text<T: DeserializeOwned>(
        &self,
        path: &str,
        text: String,
    ) -> anyhow::Result<T> {
        let url = self.url(path);
        let request = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(text);
        decode(self.send(request, &url).await?).await
    }

    /// Sends a DELETE and expects 204.
    pub(crate) async fn delete_path(&self, path: &str) -> anyhow::Result<()> {
        let url = self.url(path);
        let response = self.send(self.http.delete(&url), &url).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(server_error(response).await)
        }
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let response = self.send(self.http.get(&url), &url).await?;
        decode(response).await
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Response> {
        let request = match &self.authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
            None => request,
        };
        self.send_as_is(request, url).await
    }

    async fn send_as_is(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> anyhow::Result<Response> {
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

/// The admin token of a node on this machine, when `server` is a loopback address.
fn local_admin_token(server: &str) -> Option<String> {
    let host = reqwest::Url::parse(server).ok()?.host_str()?.to_string();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return None;
    }
    let dir = std::env::var_os("KINDLING_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ".kindling".into());
    let token = std::fs::read_to_string(dir.join("admin.token")).ok()?;
    Some(token.trim().to_string()).filter(|t| !t.is_empty())
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
        Ok(body) if status == StatusCode::UNAUTHORIZED => anyhow!(
            "{} ({status}); set KINDLING_TOKEN (or --token) to a token for this node",
            body.error.message
        ),
        Ok(body) => anyhow!("{} ({status})", body.error.message),
        Err(_) => anyhow!(
            "the server answered {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ),
    }
}

/// Percent-encodes a key or query value for a URL path or query.
pub(crate) fn encode(text: &str) -> String {
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
