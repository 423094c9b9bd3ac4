//! Read-only directory mounts: `{"mounts": [{"source": "data", "path": "/data"}]}` shows the
//! directory `data` under the node's mount root to the guest at `/data`, read-only.
//!
//! The directory is resolved and opened once, at deploy: symbolic links may not lead out of
//! the mount root, and what was checked is what the guest gets, because every request re-opens
//! the pinned directory through its descriptor rather than by path. A path swapped for a link
//! after the check reaches nothing.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::capability::{
    Capability, DeployFlag, FieldSchema, FlagForm, FunctionContext, InstanceBuilder,
};

/// The mounts capability, over the node's mount root (`None`: mounts are refused).
#[derive(Debug, Clone, Default)]
pub struct Mounts {
    root: Option<PathBuf>,
}

impl Mounts {
    /// Mounts under `root`; without a root every mount is refused with what to do.
    pub fn new(root: Option<PathBuf>) -> Self {
        Self { root }
    }
}

/// `{"mounts": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountsSection {
    /// The mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountConfig>,
}

/// One mount as deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    /// Directory under the node's `--mount-root`.
    pub source: String,
    /// Where the guest sees it, an absolute path such as `/data`.
    pub path: String,
}

/// A mount resolved and opened at deploy.
#[derive(Debug)]
pub struct PinnedMount {
    dir: File,
    guest: String,
}

impl Capability for Mounts {
    type Section = MountsSection;
    type Config = Arc<[PinnedMount]>;
    type State = ();

    fn name(&self) -> &'static str {
        "mounts"
    }

    fn fields(&self) -> Vec<FieldSchema> {
        vec![FieldSchema {
            name: "mounts",
            schema: serde_json::json!({
                "type": "array",
                "description": "Directories under the node's --mount-root the guest may read",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["source", "path"],
                    "properties": {
                        "source": {"type": "string", "description": "relative to the mount root, without .."},
                        "path": {"type": "string", "description": "absolute guest path, such as /data"}
                    }
                }
            }),
        }]
    }

    fn configure(
        &self,
        section: &mut MountsSection,
        _function: &FunctionContext<'_>,
    ) -> Result<Self::Config, String> {
        section.mounts.iter().map(|mount| self.pin(mount)).collect()
    }

    fn prepare(
        &self,
        config: &Self::Config,
        instance: &mut InstanceBuilder<'_>,
    ) -> Result<(), String> {
        for mount in config.iter() {
            let pinned = format!("/proc/self/fd/{}", mount.dir.as_raw_fd());
            instance
                .wasi()
                .preopened_dir(&pinned, &mount.guest, wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(|err| format!("cannot open mount {:?}: {err}", mount.guest))?;
        }
        Ok(())
    }

    fn inspect(&self, section: &MountsSection) -> Vec<(String, String)> {
        if section.mounts.is_empty() {
            return Vec::new();
        }
        let mounts = section
            .mounts
            .iter()
            .map(|m| format!("{}:{} (read-only)", m.source, m.path))
            .collect::<Vec<_>>()
            .join(" ");
        vec![("mounts".into(), mounts)]
    }

    fn deploy_flags(&self) -> Vec<DeployFlag> {
        vec![DeployFlag {
            long: "mount",
            short: None,
            value_name: "SOURCE:PATH",
            help: "A read-only directory, SOURCE:/guest/path with SOURCE under the node's \
                   --mount-root (repeatable)",
            field: "mounts",
            form: FlagForm::ListOf(parse_flag),
        }]
    }
}

fn parse_flag(value: &str) -> Result<serde_json::Value, String> {
    let (source, path) = value
        .split_once(':')
        .ok_or_else(|| format!("--mount {value:?} must be SOURCE:/guest/path"))?;
    Ok(serde_json::json!({"source": source, "path": path}))
}

impl Mounts {
    fn pin(&self, mount: &MountConfig) -> Result<PinnedMount, String> {
        let source = Path::new(&mount.source);
        if source.is_absolute()
            || source
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(format!(
                "mount source {:?} must be a relative path inside the node's mount root, \
                 without `..`",
                mount.source
            ));
        }
        if !mount.path.starts_with('/') || mount.path.contains('\0') {
            return Err(format!(
                "mount path {:?} must be an absolute guest path such as /data",
                mount.path
            ));
        }
        let root = self.root.as_deref().ok_or_else(|| {
            format!(
                "this node allows no directory mounts (mount {:?}); start it with --mount-root DIR",
                mount.source
            )
        })?;
        let root = root
            .canonicalize()
            .map_err(|err| format!("the node's mount root {}: {err}", root.display()))?;
        let host = root.join(source).canonicalize().map_err(|err| {
            format!(
                "mount source {:?} under the mount root: {err}",
                mount.source
            )
        })?;
        let outside = || {
            format!(
                "mount source {:?} must be a directory inside the node's mount root",
                mount.source
            )
        };
        if !host.starts_with(&root) {
            return Err(outside());
        }
        let dir =
            File::open(&host).map_err(|err| format!("mount source {:?}: {err}", mount.source))?;
        if !dir.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(outside());
        }
        Ok(PinnedMount {
            dir,
            guest: mount.path.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(root: Option<&Path>, source: &str, path: &str) -> Result<PinnedMount, String> {
        Mounts::new(root.map(Path::to_path_buf)).pin(&MountConfig {
            source: source.into(),
            path: path.into(),
        })
    }

    #[test]
    fn mounts_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(dir.path().join("secret")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("escape")).unwrap();
        std::fs::write(root.join("file"), "x").unwrap();

        pin(Some(&root), "data", "/data").unwrap();
        for (source, path, expected) in [
            ("../secret", "/data", "without `..`"),
            ("/etc", "/data", "without `..`"),
            ("data", "data", "absolute guest path"),
            ("escape", "/data", "inside the node's mount root"),
            ("file", "/data", "inside the node's mount root"),
            ("missing", "/data", "under the mount root"),
        ] {
            let err = pin(Some(&root), source, path).unwrap_err();
            assert!(err.contains(expected), "{source}: {err}");
        }
        let err = pin(None, "data", "/data").unwrap_err();
        assert!(err.contains("--mount-root"), "{err}");
    }
}
