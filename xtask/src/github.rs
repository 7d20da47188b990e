//! GitHub's releases as the `gh` CLI lists them: which versions are published, and which
//! one is GitHub's Latest. Read-only; `github_release.rs` writes. A `gh` that fails is
//! an error, never "no releases": an empty world would let a pointer move backwards.

use anyhow::Context;
use semver::Version;
use serde::Deserialize;
use xshell::{cmd, Shell};

use crate::version;

/// One release as `gh release list --json` reports it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Listed {
    pub(crate) tag_name: String,
    pub(crate) is_draft: bool,
    pub(crate) is_prerelease: bool,
    pub(crate) is_latest: bool,
}

/// Every release of the repository `gh` works on (`GH_REPO`, else the checkout's).
pub(crate) fn releases(sh: &Shell) -> anyhow::Result<Vec<Listed>> {
    let json = cmd!(sh, "gh release list --limit 1000 --json tagName,isDraft,isPrerelease,isLatest")
        .quiet()
        .read()
        .context("listing GitHub's releases with `gh` (the GitHub CLI: https://cli.github.com; GH_TOKEN or GITHUB_TOKEN must be set)")?;
    serde_json::from_str(&json).context("reading `gh release list --json` output")
}

/// The final releases GitHub has published (drafts are not published).
pub(crate) fn published_releases(sh: &Shell) -> anyhow::Result<Vec<Version>> {
    Ok(published(&releases(sh)?))
}

pub(crate) fn published(releases: &[Listed]) -> Vec<Version> {
    releases
        .iter()
        .filter(|release| !release.is_draft && !release.is_prerelease)
        .filter_map(|release| version::parse(&release.tag_name).ok())
        .filter(|version| version.pre.is_empty())
        .collect()
}

/// The version GitHub marks as Latest now, if any.
pub(crate) fn latest(releases: &[Listed]) -> Option<Version> {
    releases
        .iter()
        .find(|release| release.is_latest)
        .and_then(|release| version::parse(&release.tag_name).ok())
}
