//! Who may do what, as the registry keeps it: API tokens (only their hashes), namespaces with
//! their quotas, Rego policies (versioned) and the audit log of admin actions. The
//! [`AccessStore`] trait is what the access layer needs of a registry; the embedded default is
//! SQLite, beside the functions, so a backup of the registry carries all of it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

/// An API token as listed: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its public id, also the middle part of the token itself.
    pub id: String,
    /// A name for people (`ci`, `alice`).
    pub name: String,
    /// The namespace it acts in; absent for a node-wide token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What it may do: `read`, `deploy`, `admin`, `invoke`.
    pub scopes: Vec<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339); never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When it was revoked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The name of the token that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// A token as stored: its record and the sha256 (hex) of the whole token.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// What is listed.
    pub record: TokenRecord,
    /// The hash a presented token must match.
    pub hash: String,
}

/// What a namespace may use. Each is unlimited when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Functions the namespace may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<u32>,
    /// Versions kept per function; older ones (never the active one) are deleted on deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions_kept: Option<u32>,
    /// Memory its functions may reserve together: the sum of their memory limits, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Requests of its functions running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Requests per second, sustained (a token bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Requests the bucket holds for a burst (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// A namespace and its quotas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// Its name.
    pub name: String,
    /// Its quotas.
    pub quotas: Quotas,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When its quotas last changed (RFC 3339).
    pub updated_at: String,
}

/// One version of a Rego policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// The policy's name.
    pub name: String,
    /// Its number, counting up from 1.
    pub version: u32,
    /// The Rego source.
    pub rego: String,
    /// sha256 of the source, hex.
    pub sha256: String,
    /// When it was stored (RFC 3339).
    pub created_at: String,
}

/// One admin action, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its sequence number; read on with `after`.
    pub seq: u64,
    /// When it happened (RFC 3339).
    pub at: String,
    /// The token's id, when one was presented and known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// The token's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
    /// The namespace acted on, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What was asked: method and path (`POST /v1/functions/hello/versions`).
    pub action: String,
    /// The answer's status code.
    pub status: u16,
    /// `ok`, `denied` (401/403/429) or `failed`.
    pub result: String,
    /// The request id, to find the request in the logs.
    pub request_id: String,
    /// The source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Tokens, namespaces, policies and the audit log.
#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    /// Every token, revoked ones included.
    async fn tokens(&self) -> Result<Vec<StoredToken>, RegistryError>;

    /// Records a new token.
    async fn insert_token(&self, token: StoredToken) -> Result<TokenRecord, RegistryError>;

    /// Revokes the token with this id (or, when unique, this name); revoking twice is fine.
    async fn revoke_token(&self, id_or_name: &str) -> Result<TokenRecord, RegistryError>;

    /// Every namespace that has a record.
    async fn namespaces(&self) -> Result<Vec<NamespaceRecord>, RegistryError>;

    /// Creates a namespace (`create`) or sets the quotas of one, creating it if needed.
    async fn put_namespace(
        &self,
        name: &str,
        quotas: Quotas,
        create: bool,
    ) -> Result<NamespaceRecord, RegistryError>;

    /// The active version of every policy.
    async fn policies(&self) -> Result<Vec<PolicyRecord>, RegistryError>;

    /// Stores `rego` as the policy's next version and makes it active; storing the active
    /// source again changes nothing and returns it.
    async fn put_policy(&self, name: &str, rego: &str) -> Result<PolicyRecord, RegistryError>;

    /// Deactivates a policy (its versions stay, for the record).
    async fn remove_policy(&self, name: &str) -> Result<(), RegistryError>;

    /// Appends an audit row, durably; returns its sequence number.
    async fn append_audit(&self, record: AuditRecord) -> Result<u64, RegistryError>;

    /// Audit rows after `after`, oldest first, at most `limit`, of one namespace when given.
    async fn audit(
        &self,
        after: u64,
        limit: usize,
        namespace: Option<&str>,
    ) -> Result<Vec<AuditRecord>, RegistryError>;
}
