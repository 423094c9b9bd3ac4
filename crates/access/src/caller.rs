//! An authenticated caller and the refusals a check can give, each saying what is missing.

use std::sync::Arc;

use kindling_registry::TokenRecord;

use crate::token::Scope;

/// Who is asking: a token, or anyone on a node started with `--auth none`.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A valid token.
    Token(Arc<CallerToken>),
    /// Authentication is off (`--auth none`, loopback only): everything is allowed.
    Open,
}

/// A valid token's record and its parsed scopes.
#[derive(Debug)]
pub struct CallerToken {
    /// The record.
    pub record: TokenRecord,
    /// Its scopes.
    pub scopes: Vec<Scope>,
}

/// A request refused by authentication, authorization, a quota or a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    /// 401, 403 or 429.
    pub status: u16,
    /// A stable code for clients (`unauthenticated`, `forbidden`, ...).
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
}

impl Denied {
    /// 401: no token, or one the node does not accept.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            status: 401,
            code: "unauthenticated",
            message: message.into(),
        }
    }

    /// 403: the token is fine but does not reach this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            code: "forbidden",
            message: message.into(),
        }
    }
}

impl Caller {
    /// The token's record, when there is one.
    pub fn token(&self) -> Option<&TokenRecord> {
        match self {
            Self::Token(token) => Some(&token.record),
            Self::Open => None,
        }
    }

    /// The namespace the caller is confined to; `None` for node-wide tokens and open nodes.
    pub fn namespace(&self) -> Option<&str> {
        self.token().and_then(|t| t.namespace.as_deref())
    }

    /// Whether the caller has `scope` (in any namespace).
    pub fn has(&self, scope: Scope) -> bool {
        match self {
            Self::Token(token) => token.scopes.iter().any(|s| s.grants(scope)),
            Self::Open => true,
        }
    }

    /// Allows the caller to use `scope` on something in `namespace` (`None`: node-wide, such
    /// as tokens of every namespace or the policies), or says what the token lacks.
    pub fn require(&self, scope: Scope, namespace: Option<&str>) -> Result<(), Denied> {
        let Self::Token(token) = self else {
            return Ok(());
        };
        let name = &token.record.name;
        if !self.has(scope) {
            let held: Vec<&str> = token.scopes.iter().map(|s| s.as_str()).collect();
            return Err(Denied::forbidden(format!(
                "token {name:?} has scopes [{}] but this needs `{}`; create a token with \
                 `kindling token create NAME --scope {}`",
                held.join(", "),
                scope.as_str(),
                scope.as_str()
            )));
        }
        match (token.record.namespace.as_deref(), namespace) {
            (None, _) => Ok(()),
            (Some(own), Some(wanted)) if own == wanted => Ok(()),
            (Some(own), Some(wanted)) => Err(Denied::forbidden(format!(
                "token {name:?} is for namespace {own:?}, and this belongs to namespace \
                 {wanted:?}; use a token of {wanted:?} or a node-wide one"
            ))),
            (Some(own), None) => Err(Denied::forbidden(format!(
                "token {name:?} is confined to namespace {own:?}, and this acts on the whole \
                 node; use a node-wide token (made without --namespace)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(namespace: Option<&str>, scopes: &[Scope]) -> Caller {
        Caller::Token(Arc::new(CallerToken {
            record: TokenRecord {
                id: "0123456789abcdef".into(),
                name: "ci".into(),
                namespace: namespace.map(Into::into),
                scopes: scopes.iter().map(|s| s.as_str().to_string()).collect(),
                created_at: String::new(),
                expires_at: None,
                revoked_at: None,
                created_by: None,
            },
            scopes: scopes.to_vec(),
        }))
    }

    #[test]
    fn a_namespaced_token_reaches_only_its_namespace() {
        let ci = caller(Some("team-a"), &[Scope::Deploy]);
        assert!(ci.require(Scope::Deploy, Some("team-a")).is_ok());
        assert!(ci.require(Scope::Read, Some("team-a")).is_ok());
        let other = ci.require(Scope::Deploy, Some("team-b")).unwrap_err();
        assert_eq!(other.status, 403);
        assert!(other.message.contains("\"team-b\""), "{other}");
        assert!(ci.require(Scope::Deploy, None).is_err());
        let scope = ci.require(Scope::Admin, Some("team-a")).unwrap_err();
        assert!(scope.message.contains("needs `admin`"), "{scope}");
    }

    #[test]
    fn node_wide_tokens_and_open_nodes_reach_everything_their_scopes_allow() {
        let admin = caller(None, &[Scope::Admin]);
        assert!(admin.require(Scope::Invoke, Some("x")).is_ok());
        assert!(admin.require(Scope::Admin, None).is_ok());
        let reader = caller(None, &[Scope::Read]);
        assert!(reader.require(Scope::Deploy, Some("x")).is_err());
        assert!(Caller::Open.require(Scope::Admin, None).is_ok());
    }
}
