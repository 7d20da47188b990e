//! Where the CLI keeps its state: `STIGMER_HOME`, else `~/.stigmer`. `data/` holds the
//! container id file (a cache: the container is always found by name and label) and the
//! secret files mounted into the container, and the newer-release check's cache
//! (`update-check.json`, `update.rs`); `workspace/` is mounted at `/workspace`.
//! Nothing else writes there, and nothing here is created before it is needed.

use std::path::{Path, PathBuf};

use anyhow::Context;

pub(crate) struct Home {
    root: PathBuf,
}

impl Home {
    pub(crate) fn from_env() -> anyhow::Result<Home> {
        let root = match std::env::var_os("STIGMER_HOME") {
            Some(root) if !root.is_empty() => PathBuf::from(root),
            _ => PathBuf::from(std::env::var_os("HOME").context("neither STIGMER_HOME nor HOME is set")?)
                .join(".stigmer"),
        };
        Ok(Home { root })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub(crate) fn workspace(&self) -> PathBuf {
        self.root.join("workspace")
    }

    pub(crate) fn secrets_dir(&self) -> PathBuf {
        self.data_dir().join("secrets")
    }

    pub(crate) fn id_file(&self) -> PathBuf {
        self.data_dir().join("agent-runner-container.id")
    }
}
