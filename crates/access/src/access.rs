//! [`Access`]: the node's tokens, namespaces and policies in memory, backed by the registry.
//! Checks read only memory (a token costs one sha256 and one map lookup); changes are written
//! to the registry first and then to memory, one at a time, so a revoked token stops working
//! the moment the revocation is answered.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use kindling_registry::{
    AccessStore, AuditRecord, NamespaceRecord, Quotas, RegistryError, StoredToken, TokenRecord,
};
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use serde::{Deserialize, Serialize};

use crate::caller::{Caller, CallerToken, Denied};

mod policies;
mod replica;
use crate::policy::{Policies, PolicyError};
use crate::quota::TenantQuota;
use crate::token::{Scope, hash_token, mint, parse_token, same_hash};
use policies::sources;

/// The longest expiry a token may ask for: ten years.
const MAX_LIFETIME_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// Whether the node asks for tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every admin route needs a token (the default).
    Token,
    /// No authentication (allowed on loopback only).
    None,
}

/// What `POST /v1/tokens` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// A name for people.
    pub name: String,
    /// The namespace it acts in; node-wide when absent (only a node-wide admin may ask).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Seconds until it expires; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// The answer to `POST /v1/tokens`: the token itself, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTokenResponse {
    /// The token; the node keeps only its hash.
    pub token: String,
    /// Its record.
    pub record: TokenRecord,
}

/// What can go wrong changing access records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The caller may not do this.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A policy does not compile.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

struct Known {
    caller: Arc<CallerToken>,
    hash: [u8; 32],
    expires: Option<SystemTime>,
}

/// Tokens, namespaces, quotas and policies of one node.
pub struct Access {
    mode: AuthMode,
    store: Arc<dyn AccessStore>,
    tokens: RwLock<HashMap<String, Known>>,
    namespaces: RwLock<BTreeMap<String, NamespaceRecord>>,
    quota: Arc<TenantQuota>,
    policies: Policies,
    metrics: Registry,
    auth_failures: IntCounterVec,
    changes: tokio::sync::Mutex<()>,
    /// Refused requests without a valid token audited in the current second, so that
    /// anonymous clients cannot fill the audit log (and the disk) as fast as they can send.
    unauthenticated_rows: std::sync::Mutex<(u64, u32)>,
}

/// Rows per second for refused requests without a valid token; the rest are only counted.
const UNAUTHENTICATED_ROWS_PER_SECOND: u32 = 20;

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").field("mode", &self.mode).finish()
    }
}

impl Access {
    /// Loads tokens, namespaces and policies from `store`. `namespace_limits` are the
    /// `--namespace-limit` pairs, in force for namespaces whose record sets no in-flight quota.
    pub async fn open(
        store: Arc<dyn AccessStore>,
        mode: AuthMode,
        namespace_limits: Vec<(String, u32)>,
    ) -> Result<Arc<Self>, AccessError> {
        let metrics = Registry::new();
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "kindling_auth_failures_total",
                "Requests refused by authentication or authorization, by reason",
            ),
            &["reason"],
        )
        .expect("a valid metric");
        metrics
            .register(Box::new(auth_failures.clone()))
            .expect("register a metric once");
        let access = Self {
            mode,
            policies: Policies::new(&metrics),
            store,
            tokens: RwLock::default(),
            namespaces: RwLock::default(),
            quota: Arc::new(TenantQuota::new(namespace_limits)),
            metrics,
            auth_failures,
            changes: tokio::sync::Mutex::new(()),
            unauthenticated_rows: std::sync::Mutex::new((0, 0)),
        };
        for token in access.store.tokens().await? {
            access.remember(token);
        }
        for namespace in access.store.namespaces().await? {
            access.quota.set(&namespace.name, &namespace.quotas);
            access
                .namespaces
                .write()
                .expect("namespaces lock")
                .insert(namespace.name.clone(), namespace);
        }
        let policies = access.store.policies().await?;
        access.policies.install(&sources(&policies))?;
        Ok(Arc::new(access))
    }

    /// Whether tokens are asked for.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The quota hook for the node's admission control.
    pub fn quota(&self) -> Arc<TenantQuota> {
        self.quota.clone()
    }

    /// The active policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    fn remember(&self, token: StoredToken) {
        if let Some((id, known)) = known(token) {
            self.tokens.write().expect("tokens lock").insert(id, known);
        }
    }

    fn fail(&self, reason: &str, denied: Denied) -> Denied {
        self.auth_failures.with_label_values(&[reason]).inc();
        denied
    }

    /// The caller behind an `Authorization` header; a missing header is a 401 that says where
    /// to find a token.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, Denied> {
        match self.authenticate_optional(authorization)? {
            Some(caller) => Ok(caller),
            None => Err(self.fail(
                "missing",
                Denied::unauthenticated(
                    "this needs an API token: send `Authorization: Bearer TOKEN` (the CLI reads \
                     KINDLING_TOKEN, or the node's data directory's admin.token on the same \
                     machine); `kindling token create` makes one",
                ),
            )),
        }
    }

    /// Like [`Access::authenticate`], but no header is `None` rather than an error (for public
    /// functions, which take a token when one is sent).
    pub fn authenticate_optional(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Caller>, Denied> {
        if self.mode == AuthMode::None {
            return Ok(Some(Caller::Open));
        }
        let Some(header) = authorization else {
            return Ok(None);
        };
        let text = std::str::from_utf8(header).unwrap_or("");
        let Some(token) = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .map(str::trim)
        else {
            return Err(self.fail(
                "malformed",
                Denied::unauthenticated(
                    "the Authorization header must be `Bearer TOKEN` with a Kindling token",
                ),
            ));
        };
        let id = parse_token(token).map_err(|why| {
            self.fail(
                "malformed",
                Denied::unauthenticated(format!("the bearer token is not valid: {why}")),
            )
        })?;
        let tokens = self.tokens.read().expect("tokens lock");
        let known = tokens
            .get(id)
            .filter(|known| same_hash(&known.hash, &hash_token(token)))
            .ok_or_else(|| {
                self.fail(
                    "unknown",
                    Denied::unauthenticated(
                        "this node does not know the bearer token; check KINDLING_TOKEN, or ask \
                         an admin for a token (`kindling token create`)",
                    ),
                )
            })?;
        let record = &known.caller.record;
        if let Some(at) = &record.revoked_at {
            return Err(self.fail(
                "revoked",
                Denied::unauthenticated(format!(
                    "token {:?} was revoked at {at}; ask an admin for a new one",
                    record.name
                )),
            ));
        }
        if known.expires.is_some_and(|at| at <= SystemTime::now()) {
            return Err(self.fail(
                "expired",
                Denied::unauthenticated(format!(
                    "token {:?} expired at {}; ask an admin for a new one",
                    record.name,
                    record.expires_at.as_deref().unwrap_or("?")
                )),
            ));
        }
        Ok(Some(Caller::Token(known.caller.clone())))
    }

    /// Whether `caller`'s token still works (not revoked or expired since it was presented).
    pub fn still_valid(&self, caller: &Caller) -> Result<(), Denied> {
        let Some(token) = caller.token() else {
            return Ok(());
        };
        let tokens = self.tokens.read().expect("tokens lock");
        let Some(known) = tokens.get(&token.id) else {
            return Err(Denied::unauthenticated("the token is no longer known"));
        };
        if known.caller.record.revoked_at.is_some() {
            return Err(Denied::unauthenticated(format!(
                "token {:?} was revoked while the request ran",
                token.name
            )));
        }
        if known.expires.is_some_and(|at| at <= SystemTime::now()) {
            return Err(Denied::unauthenticated(format!(
                "token {:?} expired while the request ran",
                token.name
            )));
        }
        Ok(())
    }

    /// Counts a refusal by a check made outside this type (a scope or namespace check).
    pub fn count_refusal(&self, denied: &Denied) {
        let reason = match denied.status {
            401 => "unauthenticated",
            403 => "forbidden",
            _ => "other",
        };
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// At a node's first start (no token exists), makes a node-wide admin token and writes it
    /// to `data_dir/admin.token`, readable by its owner only. Returns the file when it did.
    pub async fn bootstrap(&self, data_dir: &Path) -> Result<Option<PathBuf>, AccessError> {
        if self.mode == AuthMode::None {
            return Ok(None);
        }
        let _change = self.changes.lock().await;
        if !self.tokens.read().expect("tokens lock").is_empty() {
            return Ok(None);
        }
        let path = data_dir.join("admin.token");
        let (token, record) = self
            .mint(
                NewTokenRequest {
                    name: "admin".into(),
                    namespace: None,
                    scopes: vec![Scope::Admin],
                    expires_in_seconds: None,
                },
                None,
            )
            .await?;
        write_secret(&path, &token).map_err(|error| {
            AccessError::Registry(RegistryError::Io {
                path: path.clone(),
                error,
            })
        })?;
        tracing::info!(token = %record.id, path = %path.display(), "created the first admin token");
        Ok(Some(path))
    }

    async fn mint(
        &self,
        request: NewTokenRequest,
        created_by: Option<String>,
    ) -> Result<(String, TokenRecord), AccessError> {
        let (token, id) = mint().map_err(|err| {
            AccessError::Invalid(format!("the system's random source failed: {err}"))
        })?;
        let now = SystemTime::now();
        if request
            .expires_in_seconds
            .is_some_and(|s| s > MAX_LIFETIME_SECONDS)
        {
            return Err(AccessError::Invalid(format!(
                "a token lives at most {MAX_LIFETIME_SECONDS} seconds (ten years); leave the \
                 expiry out for one that never expires"
            )));
        }
        let expires_at = request
            .expires_in_seconds
            .map(|s| humantime::format_rfc3339_seconds(now + Duration::from_secs(s)).to_string());
        let mut scopes: Vec<String> = request
            .scopes
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        scopes.sort();
        scopes.dedup();
        let stored = StoredToken {
            record: TokenRecord {
                id,
                name: request.name,
                namespace: request.namespace,
                scopes,
                created_at: humantime::format_rfc3339_seconds(now).to_string(),
                expires_at,
                revoked_at: None,
                created_by,
            },
            hash: hex::encode(hash_token(&token)),
        };
        let record = self.store.insert_token(stored.clone()).await?;
        self.remember(stored);
        Ok((token, record))
    }

    /// Makes a token for `caller`: an admin of the namespace (or of the node, for node-wide
    /// tokens), granting no scope the caller lacks.
    pub async fn create_token(
        &self,
        caller: &Caller,
        mut request: NewTokenRequest,
    ) -> Result<NewTokenResponse, AccessError> {
        if request.namespace.is_none() {
            request.namespace = caller.namespace().map(str::to_string);
        }
        caller.require(Scope::Admin, request.namespace.as_deref())?;
        check_token_name(&request.name)?;
        if request.scopes.is_empty() {
            return Err(AccessError::Invalid(
                "a token needs at least one scope (--scope read, deploy, admin or invoke)".into(),
            ));
        }
        if let Some(namespace) = &request.namespace {
            kindling_registry::validate_name(namespace).map_err(|_| {
                AccessError::Invalid(format!(
                    "namespace {namespace:?} must be 1-63 lowercase letters, digits and `-`"
                ))
            })?;
        }
        if let Some(missing) = request.scopes.iter().find(|s| !caller.has(**s)) {
            return Err(Denied::forbidden(format!(
                "a token cannot grant `{}`, which the token making it lacks",
                missing.as_str()
            ))
            .into());
        }
        let _change = self.changes.lock().await;
        let created_by = caller.token().map(|t| t.name.clone());
        let (token, record) = self.mint(request, created_by).await?;
        Ok(NewTokenResponse { token, record })
    }

    /// The tokens `caller` may see: all for a node-wide admin, its namespace's otherwise.
    pub fn tokens(&self, caller: &Caller) -> Result<Vec<TokenRecord>, Denied> {
        caller.require(Scope::Admin, caller.namespace())?;
        let mut tokens: Vec<TokenRecord> = self
            .tokens
            .read()
            .expect("tokens lock")
            .values()
            .map(|k| k.caller.record.clone())
            .filter(|t| {
                caller.namespace().is_none() || t.namespace.as_deref() == caller.namespace()
            })
            .collect();
        tokens.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(tokens)
    }

    /// Revokes a token by id or name; it stops working before this returns.
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        id_or_name: &str,
    ) -> Result<TokenRecord, AccessError> {
        let _change = self.changes.lock().await;
        let visible = self.tokens(caller)?;
        let mut found: Vec<&TokenRecord> = visible.iter().filter(|t| t.id == id_or_name).collect();
        if found.is_empty() {
            found = visible
                .iter()
                .filter(|t| t.name == id_or_name && t.revoked_at.is_none())
                .collect();
        }
        let target = match found.as_slice() {
            [] => return Err(RegistryError::TokenNotFound(id_or_name.to_string()).into()),
            [one] => (*one).clone(),
            many => {
                return Err(AccessError::Invalid(format!(
                    "{} live tokens are named {id_or_name:?}; revoke one by its id (`kindling \
                     token ls` shows them)",
                    many.len()
                )));
            }
        };
        caller.require(Scope::Admin, target.namespace.as_deref())?;
        let live_admins = visible
            .iter()
            .filter(|t| {
                t.namespace.is_none()
                    && t.revoked_at.is_none()
                    && t.scopes.iter().any(|s| s == "admin")
                    && !self.expired(t)
            })
            .count();
        if target.namespace.is_none()
            && target.revoked_at.is_none()
            && target.scopes.iter().any(|s| s == "admin")
            && live_admins <= 1
        {
            return Err(AccessError::Invalid(format!(
                "token {:?} is the node's last node-wide admin token: revoking it would lock \
                 everyone out; create another admin token first",
                target.name
            )));
        }
        let record = self.store.revoke_token(&target.id).await?;
        if let Some(known) = self
            .tokens
            .write()
            .expect("tokens lock")
            .get_mut(&record.id)
        {
            known.caller = Arc::new(CallerToken {
                record: record.clone(),
                scopes: known.caller.scopes.clone(),
            });
        }
        Ok(record)
    }

    fn expired(&self, token: &TokenRecord) -> bool {
        token
            .expires_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
            .is_some_and(|at| at <= SystemTime::now())
    }

    /// The namespaces with a record that `caller` may see.
    pub fn namespaces(&self, caller: &Caller) -> Result<Vec<NamespaceRecord>, Denied> {
        caller.require(Scope::Read, caller.namespace())?;
        Ok(self
            .namespaces
            .read()
            .expect("namespaces lock")
            .values()
            .filter(|n| caller.namespace().is_none_or(|own| own == n.name))
            .cloned()
            .collect())
    }

    /// A namespace's quotas (none set: all unlimited).
    pub fn quotas(&self, namespace: &str) -> Quotas {
        self.namespaces
            .read()
            .expect("namespaces lock")
            .get(namespace)
            .map(|n| n.quotas)
            .unwrap_or_default()
    }

    /// Creates a namespace (`create`) or sets its quotas. Only a node-wide admin may: a
    /// namespace's own admin must not raise its own quotas.
    pub async fn put_namespace(
        &self,
        caller: &Caller,
        name: &str,
        quotas: Quotas,
        create: bool,
    ) -> Result<NamespaceRecord, AccessError> {
        caller.require(Scope::Admin, None)?;
        if quotas
            .requests_per_second
            .is_some_and(|r| !(r > 0.0 && r.is_finite()))
        {
            return Err(AccessError::Invalid(
                "requests_per_second must be a positive number".into(),
            ));
        }
        let _change = self.changes.lock().await;
        let record = self.store.put_namespace(name, quotas, create).await?;
        self.quota.set(&record.name, &record.quotas);
        self.namespaces
            .write()
            .expect("namespaces lock")
            .insert(record.name.clone(), record.clone());
        Ok(record)
    }

    /// Appends an audit row; a failure is logged, not returned (the action itself is done).
    pub async fn record(&self, row: AuditRecord) {
        if let Err(err) = self.store.append_audit(row).await {
            tracing::error!(error = %err, "cannot write the audit log");
        }
    }

    /// Whether a refused request without a valid token gets an audit row: at most
    /// a few a second (they are all counted in `kindling_auth_failures_total`).
    pub fn audit_unauthenticated(&self) -> bool {
        let second = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut rows = self.unauthenticated_rows.lock().expect("audit budget lock");
        if rows.0 != second {
            *rows = (second, 0);
        }
        rows.1 += 1;
        rows.1 <= UNAUTHENTICATED_ROWS_PER_SECOND
    }

    /// Audit rows `caller` may read.
    pub async fn audit(
        &self,
        caller: &Caller,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, AccessError> {
        caller.require(Scope::Admin, caller.namespace())?;
        Ok(self.store.audit(after, limit, caller.namespace()).await?)
    }

    /// The access layer's metrics, in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.metrics.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A stored token as checks see it, by id; `None` (logged) when its hash does not parse.
fn known(token: StoredToken) -> Option<(String, Known)> {
    let Ok(hash) = <[u8; 32]>::try_from(hex::decode(&token.hash).unwrap_or_default()) else {
        tracing::warn!(token = %token.record.id, "a stored token hash does not parse; ignored");
        return None;
    };
    let expires = token
        .record
        .expires_at
        .as_deref()
        .and_then(|at| humantime::parse_rfc3339(at).ok());
    let scopes = token
        .record
        .scopes
        .iter()
        .filter_map(|s| Scope::parse(s).ok())
        .collect();
    let id = token.record.id.clone();
    let known = Known {
        caller: Arc::new(CallerToken {
            record: token.record,
            scopes,
        }),
        hash,
        expires,
    };
    Some((id, known))
}

fn check_token_name(name: &str) -> Result<(), AccessError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AccessError::Invalid(format!(
            "token name {name:?} must be 1-64 letters, digits, `-`, `_`, `.` or `@`"
        )))
    }
}

/// Writes a secret file readable by its owner only, atomically.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use kindling_registry::SqliteCatalog;

    use super::*;

    async fn open(dir: &Path) -> Arc<Access> {
        let catalog = Arc::new(SqliteCatalog::open(dir).await.unwrap());
        Access::open(catalog, AuthMode::Token, vec![])
            .await
            .unwrap()
    }

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    #[tokio::test]
    async fn the_first_start_writes_an_admin_token_that_works_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let access = open(dir.path()).await;
        let path = access
            .bootstrap(dir.path())
            .await
            .unwrap()
            .expect("a new token");
        let token = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let caller = access.authenticate(Some(&bearer(token.trim()))).unwrap();
        assert!(caller.require(Scope::Admin, None).is_ok());
        assert_eq!(
            access.bootstrap(dir.path()).await.unwrap(),
            None,
            "only once"
        );
        drop(access);
        let again = open(dir.path()).await;
        assert!(again.authenticate(Some(&bearer(token.trim()))).is_ok());
        assert!(
            again
                .authenticate(None)
                .unwrap_err()
                .message
                .contains("admin.token")
        );
    }

    #[tokio::test]
    async fn revocation_is_immediate_and_the_last_admin_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let access = open(dir.path()).await;
        let path = access.bootstrap(dir.path()).await.unwrap().unwrap();
        let admin_token = std::fs::read_to_string(path).unwrap();
        let admin = access
            .authenticate(Some(&bearer(admin_token.trim())))
            .unwrap();
        let made = access
            .create_token(
                &admin,
                NewTokenRequest {
                    name: "ci".into(),
                    namespace: Some("team-a".into()),
                    scopes: vec![Scope::Deploy],
                    expires_in_seconds: None,
                },
            )
            .await
            .unwrap();
        let ci = access.authenticate(Some(&bearer(&made.token))).unwrap();
        assert_eq!(ci.namespace(), Some("team-a"));
        let escalate = access
            .create_token(
                &ci,
                NewTokenRequest {
                    name: "x".into(),
                    namespace: None,
                    scopes: vec![Scope::Admin],
                    expires_in_seconds: None,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(escalate, AccessError::Denied(_)), "{escalate}");
        access.revoke_token(&admin, "ci").await.unwrap();
        let err = access.authenticate(Some(&bearer(&made.token))).unwrap_err();
        assert!(err.message.contains("revoked"), "{err}");
        let last = access.revoke_token(&admin, "admin").await.unwrap_err();
        assert!(last.to_string().contains("last node-wide admin"), "{last}");
    }

    #[tokio::test]
    async fn a_wrong_secret_with_a_known_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let access = open(dir.path()).await;
        let path = access.bootstrap(dir.path()).await.unwrap().unwrap();
        let token = std::fs::read_to_string(path).unwrap();
        let token = token.trim();
        let last = token.chars().last().unwrap();
        let forged = format!(
            "{}{}",
            &token[..token.len() - 1],
            if last == 'a' { 'b' } else { 'a' }
        );
        let err = access.authenticate(Some(&bearer(&forged))).unwrap_err();
        assert_eq!(err.status, 401);
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let access = open(dir.path()).await;
        access.bootstrap(dir.path()).await.unwrap();
        let (token, _) = access
            .mint(
                NewTokenRequest {
                    name: "old".into(),
                    namespace: None,
                    scopes: vec![Scope::Read],
                    expires_in_seconds: Some(0),
                },
                None,
            )
            .await
            .unwrap();
        let err = access.authenticate(Some(&bearer(&token))).unwrap_err();
        assert!(err.message.contains("expired"), "{err}");
    }
}
