//! `cargo xtask release-notes`: DIR/RELEASE_NOTES.md, the body of the GitHub release:
//! the changelog section, the agent-runner image, install instructions and the artifact
//! table from checksums.txt. Renders text; uploading it is `github_release.rs`'s job.

use std::path::Path;

use anyhow::{bail, Context};
use xshell::Shell;

use crate::{changelog, checksums, files, flags};

pub(crate) const NOTES: &str = "RELEASE_NOTES.md";

/// Where releases, their assets and the Homebrew tap live.
pub(crate) const GITHUB_REPO: &str = "stigmer/stigmer";
pub(crate) const HOMEBREW_TAP: &str = "stigmer/tap";

impl flags::ReleaseNotes {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let version = parse_tag(&self.version)?;
        let dir = sh.current_dir().join(&self.dir);
        let changelog = sh.read_file("CHANGELOG.md").context("reading CHANGELOG.md")?;
        let Some(changes) = changelog::section(&changelog, &version.to_string()) else {
            bail!(
                "CHANGELOG.md has no `## [{version}]` section: release notes are written after \
                 `cargo xtask release` rolled the changelog over"
            );
        };
        let artifacts = checksums::read(&dir.join(checksums::CHECKSUMS))?;
        let image =
            Image { registry: self.registry.trim_end_matches('/'), digest: self.image_digest.as_deref() };
        let notes = render(&version, changes, &image, &artifacts);
        write(&dir, &notes)?;
        println!("wrote {}", dir.join(NOTES).display());
        Ok(())
    }
}

/// `vX.Y.Z` (or a bare `X.Y.Z`) as a version.
pub(crate) fn parse_tag(text: &str) -> anyhow::Result<semver::Version> {
    semver::Version::parse(text.trim_start_matches('v'))
        .with_context(|| format!("--version {text:?} is not a version like v1.2.3"))
}

pub(crate) struct Image<'a> {
    pub(crate) registry: &'a str,
    pub(crate) digest: Option<&'a str>,
}

pub(crate) fn write(dir: &Path, notes: &str) -> anyhow::Result<()> {
    files::write_atomically(&dir.join(NOTES), notes.as_bytes())
}

/// The notes, from the changelog section `changes` and checksums.txt's (file, sha256)
/// pairs.
pub(crate) fn render(
    version: &semver::Version,
    changes: &str,
    image: &Image<'_>,
    artifacts: &[(String, String)],
) -> String {
    let tag = format!("v{version}");
    let mut notes = String::new();
    if crate::checksums::is_snapshot(version) {
        notes.push_str(&format!(
            "> **Snapshot.** {tag} was built locally by `cargo xtask release --snapshot`: nothing \
             was tagged or published.\n\n"
        ));
    } else if !version.pre.is_empty() {
        notes.push_str(&format!(
            "> **Pre-release.** {tag} is a release candidate: it is not on Homebrew, and the \
             image's `latest` tag does not point at it.\n\n"
        ));
    }
    notes.push_str("## Changes\n\n");
    notes.push_str(changes.trim_matches('\n'));
    notes.push_str("\n\n## Agent-runner image\n\n");
    let repository = format!("{}/agent-runner", image.registry);
    notes.push_str(&format!("`{repository}:{tag}` for linux/amd64 and linux/arm64"));
    match image.digest {
        Some(digest) => notes.push_str(&format!(
            ", index digest `{digest}` (verified).\n\n```sh\ndocker pull {repository}@{digest}\n```\n"
        )),
        None => notes.push_str(".\n"),
    }

    notes.push_str("\n## Install\n\n");
    if version.pre.is_empty() {
        notes.push_str(&format!(
            "Homebrew (macOS and Linux):\n\n```sh\nbrew install {HOMEBREW_TAP}/stigmer\n```\n\n"
        ));
    }
    let example = artifacts.iter().map(|(name, _)| name.as_str()).find(|name| name.contains("-linux-amd64"));
    if let Some(example) = example {
        let top = example.trim_end_matches(".tar.gz");
        let base = format!("https://github.com/{GITHUB_REPO}/releases/download/{tag}");
        notes.push_str(&format!(
            "From a tarball (here Linux on x86-64; pick your platform below):\n\n```sh\n\
             curl -LO {base}/{example}\ncurl -LO {base}/checksums.txt\n\
             sha256sum --check --ignore-missing checksums.txt\n\
             tar -xzf {example}\ninstall -m 0755 {top}/stigmer ~/.local/bin/stigmer\n```\n\n"
        ));
    }
    notes.push_str(
        "`stigmer server start` pulls the agent-runner image by itself; it needs Docker (or \
         Podman) running.\n",
    );

    notes.push_str("\n## Artifacts\n\n| File | SHA-256 |\n| --- | --- |\n");
    for (name, sha256) in artifacts {
        notes.push_str(&format!("| `{name}` | `{sha256}` |\n"));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts() -> Vec<(String, String)> {
        ["darwin-amd64", "darwin-arm64", "linux-amd64", "linux-arm64"]
            .iter()
            .enumerate()
            .map(|(i, platform)| (format!("stigmer-v1.3.0-{platform}.tar.gz"), format!("{i}").repeat(64)))
            .collect()
    }

    const CHANGES: &str = "\n### Added\n\n- `stigmer server logs --since`.\n\n### Fixed\n\n- A crash.\n\n";

    #[test]
    fn a_release_with_a_verified_image() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let image = Image { registry: "ghcr.io/stigmer", digest: Some(&digest) };
        let notes = render(&semver::Version::new(1, 3, 0), CHANGES, &image, &artifacts());
        insta::assert_snapshot!(notes);
    }

    #[test]
    fn a_pre_release_says_so_first_and_offers_no_homebrew() {
        let image = Image { registry: "ghcr.io/stigmer", digest: None };
        let version = semver::Version::parse("1.3.0-rc.1").unwrap();
        let artifacts: Vec<_> =
            artifacts().into_iter().map(|(name, sha)| (name.replace("1.3.0", "1.3.0-rc.1"), sha)).collect();
        let notes = render(&version, CHANGES, &image, &artifacts);
        insta::assert_snapshot!(notes);
    }
}
