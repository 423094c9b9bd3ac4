//! `kindling token`, `kindling ns`, `kindling policy` and `kindling audit`: who may do what on
//! a node. Each is a thin client of `/v1/tokens`, `/v1/namespaces`, `/v1/policies` and
//! `/v1/audit`; the node enforces the rules.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use kindling_access::{NewTokenRequest, NewTokenResponse, Scope};
use kindling_gateway::{NamespaceInfo, NewNamespace};
use kindling_registry::{AuditRecord, PolicyRecord, Quotas, TokenRecord};
use reqwest::Method;
use serde::Deserialize;

use super::{OutputArgs, ServerArgs};
use crate::UsageError;
use crate::output::{outln, print_json, print_table};
use crate::units::{format_size, parse_duration, parse_size};

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text)
}

#[derive(Debug, Args)]
pub(crate) struct TokenCommand {
    #[command(subcommand)]
    action: TokenAction,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Make a token; it is printed once and the node keeps only its hash
    Create {
        /// A name for people (ci, alice)
        name: String,
        /// What it may do: read, deploy (implies read), admin (everything), invoke
        /// (repeatable or comma-separated)
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Confine it to one namespace (a namespace's admin makes tokens of its own only)
        #[arg(long)]
        namespace: Option<String>,
        /// Make it stop working after this long, such as 30d or 12h
        #[arg(long, value_parser = parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens (never their secrets)
    Ls,
    /// Revoke a token by id or name; it stops working at once
    Revoke {
        /// The token's id or name
        #[arg(value_name = "TOKEN")]
        id: String,
    },
}

#[derive(Deserialize)]
struct TokenList {
    tokens: Vec<TokenRecord>,
}

impl TokenCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        match self.action {
            TokenAction::Create {
                name,
                scopes,
                namespace,
                expires,
            } => {
                let request = NewTokenRequest {
                    name,
                    namespace,
                    scopes,
                    expires_in_seconds: expires.map(|d| d.as_secs().max(1)),
                };
                let made: NewTokenResponse = client
                    .send_json(Method::POST, "/v1/tokens", Some(&request))
                    .await?;
                if self.output.json {
                    return print_json(&made);
                }
                outln!("{}", made.token);
                eprintln!(
                    "kindling: token {:?} (id {}) made; this is the only time it is shown: \
                     store it now (export KINDLING_TOKEN=...)",
                    made.record.name, made.record.id
                );
                Ok(())
            }
            TokenAction::Ls => {
                let list: TokenList = client.get_json("/v1/tokens").await?;
                if self.output.json {
                    return print_json(&list.tokens);
                }
                let rows: Vec<Vec<String>> = list
                    .tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.namespace.clone().unwrap_or_else(|| "*".into()),
                            t.scopes.join(","),
                            t.expires_at.clone().unwrap_or_else(|| "never".into()),
                            match &t.revoked_at {
                                Some(at) => format!("revoked {at}"),
                                None => "live".into(),
                            },
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "NAME", "NAMESPACE", "SCOPES", "EXPIRES", "STATE"],
                    &rows,
                );
                Ok(())
            }
            TokenAction::Revoke { id } => {
                let record: TokenRecord = client
                    .send_json::<(), _>(
                        Method::DELETE,
                        &format!("/v1/tokens/{}", path_segment(&id)?),
                        None,
                    )
                    .await?;
                if self.output.json {
                    return print_json(&record);
                }
                outln!("revoked token {:?} ({})", record.name, record.id);
                Ok(())
            }
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct NsCommand {
    #[command(subcommand)]
    action: NsAction,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct QuotaFlags {
    /// Most functions the namespace may have
    #[arg(long)]
    functions: Option<u32>,
    /// Versions kept per function (older ones are deleted on deploy, never the active one)
    #[arg(long)]
    versions_kept: Option<u32>,
    /// Memory its functions may reserve together (the sum of their limits), such as 2GiB
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Requests of its functions running at once
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Requests per second, sustained
    #[arg(long)]
    rps: Option<f64>,
    /// Requests a burst may take at once (default: one second's worth)
    #[arg(long)]
    burst: Option<u32>,
}

impl QuotaFlags {
    fn quotas(&self) -> Quotas {
        Quotas {
            functions: self.functions,
            versions_kept: self.versions_kept,
            memory_bytes: self.memory,
            max_in_flight: self.max_in_flight,
            requests_per_second: self.rps,
            burst: self.burst,
        }
    }

    fn apply(&self, quotas: &mut Quotas) {
        let new = self.quotas();
        quotas.functions = new.functions.or(quotas.functions);
        quotas.versions_kept = new.versions_kept.or(quotas.versions_kept);
        quotas.memory_bytes = new.memory_bytes.or(quotas.memory_bytes);
        quotas.max_in_flight = new.max_in_flight.or(quotas.max_in_flight);
        quotas.requests_per_second = new.requests_per_second.or(quotas.requests_per_second);
        quotas.burst = new.burst.or(quotas.burst);
    }
}

#[derive(Debug, Subcommand)]
enum NsAction {
    /// Create a namespace with quotas
    Create {
        /// Its name
        name: String,
        #[command(flatten)]
        quotas: QuotaFlags,
    },
    /// List namespaces, their quotas and what they use
    Ls,
    /// Change a namespace's quotas (the ones given; `--clear` first removes all)
    Set {
        /// Its name
        name: String,
        #[command(flatten)]
        quotas: QuotaFlags,
        /// Start from no quotas instead of the current ones
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Deserialize)]
struct NamespaceList {
    namespaces: Vec<NamespaceInfo>,
}

impl NsCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        let json = self.output.json;
        match self.action {
            NsAction::Create { name, quotas } => {
                let body = NewNamespace {
                    name,
                    quotas: quotas.quotas(),
                };
                let info: NamespaceInfo = client
                    .send_json(Method::POST, "/v1/namespaces", Some(&body))
                    .await?;
                print_namespace(json, &info)
            }
            NsAction::Ls => {
                let list: NamespaceList = client.get_json("/v1/namespaces").await?;
                if self.output.json {
                    return print_json(&list.namespaces);
                }
                let limit = |value: Option<String>| value.unwrap_or_else(|| "-".into());
                let rows: Vec<Vec<String>> = list
                    .namespaces
                    .iter()
                    .map(|n| {
                        let q = &n.quotas;
                        vec![
                            n.name.clone(),
                            format!(
                                "{}/{}",
                                n.functions,
                                limit(q.functions.map(|v| v.to_string()))
                            ),
                            format!(
                                "{}/{}",
                                format_size(n.memory_bytes),
                                limit(q.memory_bytes.map(format_size))
                            ),
                            format!(
                                "{}/{}",
                                n.in_flight,
                                limit(q.max_in_flight.map(|v| v.to_string()))
                            ),
                            limit(q.requests_per_second.map(|v| v.to_string())),
                            limit(q.versions_kept.map(|v| v.to_string())),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "NAMESPACE",
                        "FUNCTIONS",
                        "MEMORY",
                        "IN FLIGHT",
                        "RPS",
                        "VERSIONS KEPT",
                    ],
                    &rows,
                );
                Ok(())
            }
            NsAction::Set {
                name,
                quotas,
                clear,
            } => {
                let list: NamespaceList = client.get_json("/v1/namespaces").await?;
                let mut current = if clear {
                    Quotas::default()
                } else {
                    list.namespaces
                        .iter()
                        .find(|n| n.name == name)
                        .map(|n| n.quotas)
                        .unwrap_or_default()
                };
                quotas.apply(&mut current);
                let info: NamespaceInfo = client
                    .send_json(
                        Method::PUT,
                        &format!("/v1/namespaces/{}", path_segment(&name)?),
                        Some(&current),
                    )
                    .await?;
                print_namespace(json, &info)
            }
        }
    }
}

fn print_namespace(json: bool, info: &NamespaceInfo) -> anyhow::Result<()> {
    if json {
        return print_json(info);
    }
    outln!(
        "namespace {}: {}",
        info.name,
        serde_json::to_string(&info.quotas)?
    );
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct PolicyCommand {
    #[command(subcommand)]
    action: PolicyAction,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum PolicyAction {
    /// Store a .rego file as a policy's next version (refused, changing nothing, when it does
    /// not compile)
    Add {
        /// The policy's name (default: the file's name without .rego)
        #[arg(long)]
        name: Option<String>,
        /// The Rego file
        file: PathBuf,
    },
    /// List the active policies
    Ls,
    /// Deactivate a policy
    Rm {
        /// Its name
        name: String,
    },
}

#[derive(Deserialize)]
struct PolicyList {
    policies: Vec<PolicyRecord>,
}

impl PolicyCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        match self.action {
            PolicyAction::Add { name, file } => {
                let rego = std::fs::read_to_string(&file)
                    .map_err(|err| UsageError(format!("cannot read {}: {err}", file.display())))?;
                let name = match name {
                    Some(name) => name,
                    None => file
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .map(str::to_string)
                        .ok_or_else(|| UsageError("give the policy a --name".into()))?,
                };
                let record: PolicyRecord = client
                    .put_text(&format!("/v1/policies/{}", path_segment(&name)?), rego)
                    .await?;
                if self.output.json {
                    return print_json(&record);
                }
                outln!(
                    "policy {} version {} is active",
                    record.name,
                    record.version
                );
                Ok(())
            }
            PolicyAction::Ls => {
                let list: PolicyList = client.get_json("/v1/policies").await?;
                if self.output.json {
                    return print_json(&list.policies);
                }
                let rows: Vec<Vec<String>> = list
                    .policies
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.version.to_string(),
                            p.sha256.get(..12).unwrap_or(&p.sha256).to_string(),
                            p.created_at.clone(),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "VERSION", "SHA256", "STORED"], &rows);
                Ok(())
            }
            PolicyAction::Rm { name } => {
                client
                    .delete_path(&format!("/v1/policies/{}", path_segment(&name)?))
                    .await?;
                if !self.output.json {
                    outln!("policy {name} removed");
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct AuditCommand {
    /// Show entries after this sequence number
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many entries
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Deserialize)]
struct AuditPage {
    entries: Vec<AuditRecord>,
}

impl AuditCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        let page: AuditPage = client
            .get_json(&format!(
                "/v1/audit?after={}&limit={}",
                self.after, self.limit
            ))
            .await?;
        if self.output.json {
            return print_json(&page.entries);
        }
        let rows: Vec<Vec<String>> = page
            .entries
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    e.at.clone(),
                    e.token_name.clone().unwrap_or_else(|| "-".into()),
                    e.namespace.clone().unwrap_or_else(|| "-".into()),
                    e.action.clone(),
                    format!("{} {}", e.status, e.result),
                ]
            })
            .collect();
        print_table(
            &["SEQ", "AT", "TOKEN", "NAMESPACE", "ACTION", "RESULT"],
            &rows,
        );
        Ok(())
    }
}

/// A name or id as one path segment; refuses what would change the path.
fn path_segment(text: &str) -> Result<&str, UsageError> {
    if text.is_empty() || text.contains(['/', '?', '#', '%', ' ']) {
        return Err(UsageError(format!("{text:?} is not a valid name or id")));
    }
    Ok(text)
}
