//! Where the CLI keeps its state: `STIGMER_HOME`, else `~/.stigmer` (on Windows
//! `%USERPROFILE%\.stigmer`, on a drive Docker Desktop can bind-mount). `data/` holds the
//! container id file (a cache: the container is always found by name and label) and the
//! secret files mounted into the container, and the newer-release check's cache
//! (`update-check.json`, `update.rs`); `workspace/` is mounted at `/workspace`.
//! Nothing else writes there, and nothing here is created before it is needed.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The user's home directory: what `~` means to the docker CLI on this system.
#[cfg(windows)]
const HOME_VARIABLE: &str = "USERPROFILE";
#[cfg(not(windows))]
const HOME_VARIABLE: &str = "HOME";

/// The user's home directory, from `env` (unset and empty alike `None`).
pub(crate) fn user_home(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env(HOME_VARIABLE).map(PathBuf::from)
}

pub(crate) struct Home {
    root: PathBuf,
}

impl Home {
    pub(crate) fn from_env() -> anyhow::Result<Home> {
        let root = match std::env::var_os("STIGMER_HOME") {
            Some(root) if !root.is_empty() => PathBuf::from(root),
            _ => user_home(&|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
                .with_context(|| format!("neither STIGMER_HOME nor {HOME_VARIABLE} is set"))?
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
