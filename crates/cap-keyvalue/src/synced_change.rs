//! What travels between the nodes of a synced store: a [`Change`] to one key, stamped with
//! when and where it was made ([`Stamp`]), as JSON (values in base64).

use serde::{Deserialize, Serialize};

/// When and where a write was made. Stamps order by clock, then by node name, so that two
/// nodes' writes never tie.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    /// The hybrid logical clock: milliseconds since 1970 in the high 48 bits, a counter in the
    /// low 16.
    pub hlc: u64,
    /// The writing node's name.
    pub node: String,
}

/// One change to a synced store, as it travels between nodes (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The key changed.
    pub key: String,
    /// When and where.
    pub stamp: Stamp,
    /// What happened to it.
    #[serde(flatten)]
    pub op: Op,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The key was set (`value`, base64) or deleted (no value).
    Put {
        /// The new value; absent for a delete.
        #[serde(
            default,
            with = "base64_bytes",
            skip_serializing_if = "Option::is_none"
        )]
        value: Option<Vec<u8>>,
    },
    /// The stamp's node's share of a counter: everything it added (`up`) and subtracted
    /// (`down`) since the put stamped `epoch` (the default stamp: since the key was never set).
    Count {
        /// The put the counter counts from.
        epoch: Stamp,
        /// The sum of this node's positive increments.
        up: u64,
        /// The sum of this node's negative increments, as a positive number.
        down: u64,
        /// The name this share counts under when it is not the stamp's node: a store put back
        /// from a backup counts under a name of its own, since the share its node had sent
        /// before is greater than the backup's, and would hide its next increments.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share: Option<String>,
    },
}

impl Change {
    /// Whose share of a counter a `Count` change is.
    pub(super) fn sharer(&self) -> &str {
        match &self.op {
            Op::Count {
                share: Some(share), ..
            } => share,
            _ => &self.stamp.node,
        }
    }

    /// The change as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a change serializes")
    }

    /// A change from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|err| format!("not a key-value change: {err}"))
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        text.map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}
