//! A function's record in the shared bucket: its versions and which one serves, as JSON under
//! the function's name. The bucket revision of the record is its version for compare-and-set.

use kindling_registry::{FunctionConfig, RegistryError, Replica, VersionRecord};
use serde::{Deserialize, Serialize};

/// One function as the cluster records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    /// The version that serves.
    pub(crate) active: u32,
    /// Every version kept, oldest first.
    pub(crate) versions: Vec<RecordVersion>,
    /// The node that made the last change.
    pub(crate) changed_by: String,
    /// When, RFC 3339.
    pub(crate) changed_at: String,
}

/// One immutable version.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordVersion {
    pub(crate) version: u32,
    pub(crate) sha256: String,
    pub(crate) kind: String,
    pub(crate) size_bytes: u64,
    pub(crate) config: FunctionConfig,
    pub(crate) created_at: String,
}

impl Record {
    /// Reads a bucket value.
    pub(crate) fn parse(name: &str, bytes: &[u8]) -> Result<Self, RegistryError> {
        serde_json::from_slice(bytes).map_err(|err| {
            RegistryError::Corrupt(format!(
                "the cluster's record of {name:?} does not parse ({err}); deploy the function \
                 again to replace it"
            ))
        })
    }

    /// The bucket value.
    pub(crate) fn to_bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("a record always serializes")
            .into()
    }

    /// The number the next version gets.
    pub(crate) fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }

    /// One version as the catalog knows it.
    pub(crate) fn version(&self, name: &str, number: u32) -> Option<VersionRecord> {
        self.versions
            .iter()
            .find(|v| v.version == number)
            .map(|v| v.to_version(name))
    }

    /// What the local copy is made from.
    pub(crate) fn replica(&self, name: &str) -> Replica {
        Replica {
            active: self.active,
            versions: self.versions.iter().map(|v| v.to_version(name)).collect(),
        }
    }

    /// The record of a function as a catalog holds it (a node publishing what only it had).
    pub(crate) fn from_versions(active: u32, versions: &[VersionRecord], changed_by: &str) -> Self {
        let mut versions: Vec<RecordVersion> =
            versions.iter().map(RecordVersion::from_version).collect();
        versions.sort_by_key(|v| v.version);
        Self {
            active,
            versions,
            changed_by: changed_by.to_string(),
            changed_at: now(),
        }
    }
}

impl RecordVersion {
    pub(crate) fn from_version(version: &VersionRecord) -> Self {
        Self {
            version: version.version,
            sha256: version.sha256.clone(),
            kind: version.kind.clone(),
            size_bytes: version.size_bytes,
            config: version.config.clone(),
            created_at: version.created_at.clone(),
        }
    }

    fn to_version(&self, name: &str) -> VersionRecord {
        VersionRecord {
            function: name.to_string(),
            version: self.version,
            sha256: self.sha256.clone(),
            kind: self.kind.clone(),
            size_bytes: self.size_bytes,
            config: self.config.clone(),
            created_at: self.created_at.clone(),
        }
    }
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_numbers_versions_past_the_highest() {
        let version = |number| VersionRecord {
            function: "f".into(),
            version: number,
            sha256: format!("{number:064}"),
            kind: "wasi-http".into(),
            size_bytes: 10,
            config: FunctionConfig::default(),
            created_at: "2026-12-02T10:00:00.000Z".into(),
        };
        let record = Record::from_versions(3, &[version(3), version(1)], "n1");
        assert_eq!(record.versions[0].version, 1, "oldest first");
        assert_eq!(record.next_version(), 4);
        let again = Record::parse("f", &record.to_bytes()).unwrap();
        assert_eq!(again.replica("f"), record.replica("f"));
        assert_eq!(again.version("f", 3).unwrap(), version(3));
        assert!(again.version("f", 2).is_none());
        let err = Record::parse("f", b"{\"active\":1}").unwrap_err();
        assert!(
            err.to_string().contains("deploy the function again"),
            "{err}"
        );
    }
}
