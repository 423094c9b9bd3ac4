//! Cluster settings, checked before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ClusterError;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS servers, `nats://host:port` (any one of them is enough; the client learns the rest).
    pub servers: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node_name: String,
    /// Where the node runs (a region, a site), shown by `kindling nodes`.
    pub zone: Option<String>,
    /// A NATS credentials file (`.creds`: a user JWT and its nkey seed).
    pub credentials: Option<PathBuf>,
    /// A NATS token, for servers that use token authentication.
    pub token: Option<String>,
    /// Replicas of the cluster's buckets (JetStream R1 or R3); a single NATS server gets one
    /// whatever is asked.
    pub replicas: usize,
    /// How often the node reports itself; it counts as gone after three missed reports.
    pub heartbeat: Duration,
    /// Pass requests this node has no room for to a peer that has (spill-over), and take
    /// theirs.
    pub spill: bool,
    /// The JetStream domain holding the cluster's buckets and streams, when it is not the
    /// local server's: an edge site whose NATS is a leaf node of the hub's names the hub's.
    pub domain: Option<String>,
}

impl ClusterConfig {
    /// The JetStream context of the cluster's domain.
    pub(crate) fn jetstream(&self, client: &async_nats::Client) -> async_nats::jetstream::Context {
        match &self.domain {
            Some(domain) => async_nats::jetstream::with_domain(client.clone(), domain),
            None => async_nats::jetstream::new(client.clone()),
        }
    }

    /// Reads `--cluster`: comma-separated NATS URLs.
    pub fn parse_servers(list: &str) -> Result<Vec<String>, ClusterError> {
        let servers: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if servers.is_empty() {
            return Err(ClusterError::Config(
                "--cluster needs at least one NATS URL, such as nats://127.0.0.1:4222".into(),
            ));
        }
        for server in &servers {
            let rest = ["nats://", "tls://"]
                .iter()
                .find_map(|scheme| server.strip_prefix(scheme));
            let host = rest.map(|rest| rest.rsplit('@').next().unwrap_or(rest));
            if !host.is_some_and(|host| !host.is_empty() && !host.starts_with(':')) {
                return Err(ClusterError::Config(format!(
                    "--cluster {server:?} is not a NATS URL: write nats://HOST:PORT (or \
                     tls://HOST:PORT), several separated by commas"
                )));
            }
        }
        Ok(servers)
    }

    /// Checks the settings that the flags alone cannot.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let name = &self.node_name;
        let fits = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !fits {
            return Err(ClusterError::Config(format!(
                "--node-name {name:?} cannot name a cluster node: use 1 to 63 letters, digits, \
                 `-` or `_`, and give every node its own"
            )));
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            return Err(ClusterError::Config(format!(
                "--cluster-replicas {} is not a JetStream replica count: use 1, 3 or 5",
                self.replicas
            )));
        }
        if self.credentials.is_some() && self.token.is_some() {
            return Err(ClusterError::Config(
                "give NATS either --cluster-creds or --cluster-token, not both".into(),
            ));
        }
        if self.heartbeat.is_zero() {
            return Err(ClusterError::Config(
                "the cluster heartbeat must be longer than zero".into(),
            ));
        }
        if let Some(domain) = &self.domain {
            let fits = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !fits {
                return Err(ClusterError::Config(format!(
                    "--cluster-domain {domain:?} is not a JetStream domain: use letters, digits, \
                     `-` or `_`, as the hub's NATS servers name it"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_nats_urls() {
        let servers =
            ClusterConfig::parse_servers("nats://a:4222, nats://user:pw@b:4223,tls://c:4222")
                .unwrap();
        assert_eq!(servers.len(), 3);
        for bad in [
            "",
            " , ",
            "a:4222",
            "http://a:4222",
            "nats://",
            "nats://:4222",
        ] {
            let err = ClusterConfig::parse_servers(bad).unwrap_err().to_string();
            assert!(err.contains("--cluster"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_node_name_must_fit_a_bucket_key() {
        let mut config = ClusterConfig {
            servers: vec!["nats://a:4222".into()],
            node_name: "edge-1".into(),
            zone: None,
            credentials: None,
            token: None,
            replicas: 3,
            heartbeat: Duration::from_secs(2),
            spill: true,
            domain: None,
        };
        config.validate().unwrap();
        for bad in ["", "a.b", "a b", "ä"] {
            config.node_name = bad.into();
            assert!(config.validate().is_err(), "{bad:?}");
        }
        config.node_name = "n".into();
        config.replicas = 2;
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("1, 3 or 5")
        );
    }
}
