//! API tokens: `kdl_{id}_{secret}`, 16 hex digits of public id and 64 of secret. The node keeps
//! only the sha256 of the whole token; the id finds the record, so a presented token costs one
//! hash and one map lookup, and logs and the audit can name a token without its secret.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What every token starts with, so that secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "kdl_";

const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Scope {
    /// List and inspect functions, read logs, stores and databases.
    Read,
    /// Deploy, roll back and delete functions, write stores and databases; implies `read`.
    Deploy,
    /// Everything, including tokens, namespaces, policies and the audit log.
    Admin,
    /// Call functions deployed with `auth = "token"`.
    Invoke,
}

impl Scope {
    /// Every scope, for messages.
    pub const ALL: &[Scope] = &[Scope::Read, Scope::Deploy, Scope::Admin, Scope::Invoke];

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Deploy => "deploy",
            Self::Admin => "admin",
            Self::Invoke => "invoke",
        }
    }

    /// Parses a scope name.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown scope {text:?}; scopes are {}",
                    Self::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Whether holding `self` grants `wanted`: admin grants all, deploy grants read.
    pub fn grants(self, wanted: Scope) -> bool {
        self == wanted || self == Self::Admin || (self == Self::Deploy && wanted == Self::Read)
    }
}

/// A new token: its text (shown once) and its public id.
pub(crate) fn mint() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; ID_HEX / 2 + SECRET_HEX / 2];
    getrandom::fill(&mut bytes)?;
    let id = hex::encode(&bytes[..ID_HEX / 2]);
    let secret = hex::encode(&bytes[ID_HEX / 2..]);
    Ok((format!("{TOKEN_PREFIX}{id}_{secret}"), id))
}

/// The sha256 of a token, as stored.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The public id of a well-formed token, or why it is not one.
pub fn parse_token(token: &str) -> Result<&str, &'static str> {
    let rest = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or("a Kindling token starts with `kdl_`")?;
    let (id, secret) = rest
        .split_once('_')
        .ok_or("a Kindling token is `kdl_` followed by an id, `_` and a secret")?;
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if id.len() != ID_HEX || secret.len() != SECRET_HEX || !hex(id) || !hex(secret) {
        return Err("the token is cut short or mangled; copy it again as it was printed");
    }
    Ok(id)
}

/// Compares two hashes in time independent of where they differ.
pub(crate) fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_and_hash() {
        let (token, id) = mint().unwrap();
        assert_eq!(parse_token(&token), Ok(id.as_str()));
        let (other, _) = mint().unwrap();
        assert_ne!(token, other);
        assert!(same_hash(&hash_token(&token), &hash_token(&token)));
        assert!(!same_hash(&hash_token(&token), &hash_token(&other)));
    }

    #[test]
    fn malformed_tokens_are_named() {
        assert!(parse_token("Bearer x").is_err());
        assert!(parse_token("kdl_abc").is_err());
        assert!(parse_token("kdl_0123456789abcdef_00").is_err());
        let (token, _) = mint().unwrap();
        assert!(parse_token(&token[..token.len() - 1]).is_err());
        assert!(parse_token(&token.to_uppercase()).is_err());
    }

    #[test]
    fn admin_grants_everything_and_deploy_grants_read() {
        assert!(Scope::Admin.grants(Scope::Invoke));
        assert!(Scope::Deploy.grants(Scope::Read));
        assert!(!Scope::Deploy.grants(Scope::Invoke));
        assert!(!Scope::Read.grants(Scope::Deploy));
        assert!(!Scope::Invoke.grants(Scope::Read));
        assert_eq!(Scope::parse("deploy"), Ok(Scope::Deploy));
        assert!(
            Scope::parse("root")
                .unwrap_err()
                .contains("read, deploy, admin, invoke")
        );
    }
}
