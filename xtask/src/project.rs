//! Facts about the checkout that several commands stamp into what they build: the
//! workspace version, the git revision and the source date. Reading only; changing the
//! version is `release.rs`'s job.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use xshell::{cmd, Shell};

/// The workspace root: every shell xtask makes starts here. `XTASK_PROJECT_ROOT`
/// points it at another checkout; the release tests use that to cut releases in
/// throwaway repositories.
pub(crate) fn root() -> PathBuf {
    match std::env::var_os("XTASK_PROJECT_ROOT") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ has a parent").to_path_buf(),
    }
}

/// `[workspace.package] version` of the root `Cargo.toml`: the one product version.
pub(crate) fn workspace_version(sh: &Shell) -> anyhow::Result<semver::Version> {
    let manifest = sh.read_file("Cargo.toml").context("reading Cargo.toml")?;
    let doc: toml_edit::DocumentMut = manifest.parse().context("parsing Cargo.toml")?;
    let version = doc["workspace"]["package"]["version"]
        .as_str()
        .context("Cargo.toml has no [workspace.package] version")?;
    semver::Version::parse(version).with_context(|| format!("Cargo.toml version {version:?} is not semver"))
}

/// The commit the build comes from, or `unknown` outside a git checkout (a source
/// tarball): a build must not fail for want of history.
pub(crate) fn git_revision(sh: &Shell) -> String {
    cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|rev| rev.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The time stamped into artifacts: `SOURCE_DATE_EPOCH` when set (the reproducible
/// builds convention), else the commit time, else the Unix epoch. Never "now": two
/// builds of one commit must agree.
pub(crate) fn source_date(sh: &Shell) -> anyhow::Result<DateTime<Utc>> {
    let epoch = match sh.var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch,
        Err(_) => cmd!(sh, "git log -1 --format=%ct").quiet().ignore_stderr().read().unwrap_or_default(),
    };
    let seconds: i64 = match epoch.trim() {
        "" => 0,
        text => text.parse().with_context(|| format!("SOURCE_DATE_EPOCH is not a number: {text:?}"))?,
    };
    DateTime::from_timestamp(seconds, 0).context("source date out of range")
}
