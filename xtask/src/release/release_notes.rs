//! `cargo xtask release-notes`: DIR/RELEASE_NOTES.md, the body of the GitHub release:
//! the changelog section, the agent-runner image, install instructions and the artifact
//! table from checksums.txt. Renders text; uploading it is `github_release.rs`'s job.

use std::path::Path;

use anyhow::{bail, Context};
use xshell::Shell;

use crate::{dist::checksums, files, flags, plan, pointer::Decision, release::changelog, version};

pub(crate) const NOTES: &str = "RELEASE_NOTES.md";

/// Where releases, their assets and the Homebrew tap live.
pub(crate) const GITHUB_REPO: &str = "stigmer/stigmer";
pub(crate) const HOMEBREW_TAP: &str = "stigmer/tap";

impl flags::ReleaseNotes {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let plan = plan::load(sh, self.plan.as_deref(), self.version.as_deref(), &self.registry, false)?;
        let image_digest = match &self.plan {
            Some(_) => plan.image_digest(self.image_digest)?,
            None => self.image_digest,
        };
        let (version, repository) = (plan.version.clone(), plan.image.repository.clone());
        let dir = sh.current_dir().join(&self.dir);
        let changelog = sh.read_file("CHANGELOG.md").context("reading CHANGELOG.md")?;
        let section =
            if version::is_snapshot(&version) { "Unreleased".to_owned() } else { version.to_string() };
        let Some(changes) = changelog::section(&changelog, &section) else {
            bail!(
                "CHANGELOG.md has no `## [{section}]` section: release notes are written after \
                 `cargo xtask release` rolled the changelog over"
            );
        };
        let artifacts = checksums::read(&dir.join(checksums::CHECKSUMS))?;
        let image = if version::is_snapshot(&version) {
            Image::Snapshot {
                built: None,
                skipped: vec!["the image: a dry run builds and pushes none".to_owned()],
            }
        } else {
            Image::Published { repository: &repository, digest: image_digest.as_deref() }
        };
        let notes = render(&version, changes, &image, &artifacts, &plan.homebrew);
        write(&dir, &notes)?;
        println!("wrote {}", dir.join(NOTES).display());
        Ok(())
    }
}

/// What the notes say of the agent-runner image.
pub(crate) enum Image<'a> {
    /// A release's: `repository:vX.Y.Z`, by its verified index digest once known.
    Published { repository: &'a str, digest: Option<&'a str> },
    /// A snapshot's: what was built locally, and what was not and why.
    Snapshot { built: Option<String>, skipped: Vec<String> },
}

pub(crate) fn write(dir: &Path, notes: &str) -> anyhow::Result<()> {
    files::write_atomically(&dir.join(NOTES), notes.as_bytes())
}

/// The notes, from the changelog section `changes` and checksums.txt's (file, sha256)
/// pairs; `homebrew` is the plan's word on the formula (it offers `brew install` only
/// when the formula moves to this version: a backport's would install a newer one).
pub(crate) fn render(
    version: &semver::Version,
    changes: &str,
    image: &Image<'_>,
    artifacts: &[(String, String)],
    homebrew: &Decision,
) -> String {
    let tag = format!("v{version}");
    let mut notes = String::new();
    if version::is_snapshot(version) {
        notes.push_str(&format!(
            "> **Snapshot.** {tag} was built locally (`cargo xtask release --snapshot`, or a dry \
             run): nothing was tagged or published, and nothing here can be downloaded.\n\n"
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
    match image {
        Image::Published { repository, digest } => {
            notes.push_str(&format!("`{repository}:{tag}` for linux/amd64 and linux/arm64"));
            match digest {
                Some(digest) => notes.push_str(&format!(
                    ", index digest `{digest}` (verified).\n\n```sh\ndocker pull {repository}@{digest}\n```\n"
                )),
                None => notes.push_str(".\n"),
            }
        }
        Image::Snapshot { built, skipped } => {
            match built {
                Some(built) => {
                    notes.push_str(&format!("Built into the local engine: {built}. Not pushed.\n"))
                }
                None => notes.push_str("No image was built.\n"),
            }
            for reason in skipped {
                notes.push_str(&format!("- Skipped {reason}\n"));
            }
        }
    }

    if !version::is_snapshot(version) {
        install_section(&mut notes, &tag, artifacts, homebrew);
    }
    notes.push_str("\n## Artifacts\n\n| File | SHA-256 |\n| --- | --- |\n");
    for (name, sha256) in artifacts {
        notes.push_str(&format!("| `{name}` | `{sha256}` |\n"));
    }
    notes
}

/// How to install this version: Homebrew when the formula moves to it, a tarball, and
/// the Windows zip.
fn install_section(notes: &mut String, tag: &str, artifacts: &[(String, String)], homebrew: &Decision) {
    notes.push_str("\n## Install\n\n");
    if homebrew.moves {
        notes.push_str(&format!(
            "Homebrew (macOS and Linux):\n\n```sh\nbrew install {HOMEBREW_TAP}/stigmer\n```\n\n"
        ));
    } else {
        notes.push_str(&format!(
            "Homebrew installs the newest release, not {tag} ({}): install {tag} from its archive.\n\n",
            homebrew.reason
        ));
    }
    let base = format!("https://github.com/{GITHUB_REPO}/releases/download/{tag}");
    if artifacts.iter().any(|(name, _)| name == checksums::INSTALLER) {
        notes.push_str(&format!(
            "With the installer (Linux and macOS; it checks the archive's sha256, and with \
             `cosign` on PATH the signature of checksums.txt, then installs to ~/.local/bin):\n\n\
             ```sh\ncurl -fsSL {base}/{installer} | sh\n```\n\n",
            installer = checksums::INSTALLER
        ));
    }
    let example = artifacts.iter().map(|(name, _)| name.as_str()).find(|name| name.contains("-linux-amd64"));
    if let Some(example) = example {
        let top = example.trim_end_matches(".tar.gz");
        notes.push_str(&format!(
            "From a tarball (here Linux on x86-64; pick your platform below):\n\n```sh\n\
             curl -LO {base}/{example}\ncurl -LO {base}/checksums.txt\n\
             sha256sum --check --ignore-missing checksums.txt\n\
             tar -xzf {example}\ninstall -m 0755 {top}/stigmer ~/.local/bin/stigmer\n```\n\n"
        ));
    }
    let windows =
        artifacts.iter().map(|(name, _)| name.as_str()).find(|name| name.contains("-windows-amd64"));
    if let Some(zip) = windows {
        let top = zip.trim_end_matches(".zip");
        notes.push_str(&format!(
            "On Windows (x86-64; PowerShell, with the curl and tar that Windows 10 and later ship), \
             check that the hash equals the zip's line in checksums.txt, then put \
             `{top}\\stigmer.exe` on your PATH:\n\n```powershell\n\
             curl.exe -LO {base}/{zip}\ncurl.exe -LO {base}/checksums.txt\n\
             (Get-FileHash {zip} -Algorithm SHA256).Hash\nSelect-String {zip} checksums.txt\n\
             tar -xf {zip}\n```\n\n"
        ));
    }
    notes.push_str(
        "`stigmer server start` pulls the agent-runner image by itself; it needs Docker (or \
         Podman) running: on Windows, Docker Desktop.\n",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts() -> Vec<(String, String)> {
        let version = semver::Version::new(1, 3, 0);
        crate::platform::Target::ALL
            .into_iter()
            .map(|target| target.archive_name(&version))
            // In name order, as checksums.txt lists them.
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name, format!("{i}").repeat(64)))
            .chain([(checksums::INSTALLER.to_owned(), "9".repeat(64))])
            .collect()
    }

    fn formula(moves: bool, reason: &str) -> Decision {
        Decision { moves, reason: reason.to_owned() }
    }

    const CHANGES: &str = "\n### Added\n\n- `stigmer server logs --since`.\n\n### Fixed\n\n- A crash.\n\n";

    #[test]
    fn a_release_with_a_verified_image() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let image = Image::Published { repository: "ghcr.io/stigmer/agent-runner", digest: Some(&digest) };
        let moves = formula(true, "v1.3.0 is the newest release");
        let notes = render(&semver::Version::new(1, 3, 0), CHANGES, &image, &artifacts(), &moves);
        insta::assert_snapshot!(notes);
    }

    /// Found by reading: a backport's notes offered `brew install`, which installs the
    /// newest release, not the backport.
    #[test]
    fn a_backport_offers_its_archive_not_homebrew() {
        let image = Image::Published { repository: "ghcr.io/stigmer/agent-runner", digest: None };
        let stays = formula(false, "v1.3.0 is newer on its line");
        let notes = render(&semver::Version::new(1, 2, 4), CHANGES, &image, &artifacts(), &stays);
        assert!(!notes.contains(&format!("brew install {HOMEBREW_TAP}")), "{notes}");
        assert!(
            notes.contains("Homebrew installs the newest release, not v1.2.4 (v1.3.0 is newer on its line)"),
            "{notes}"
        );
    }

    #[test]
    fn a_pre_release_says_so_first_and_offers_no_homebrew() {
        let image = Image::Published { repository: "ghcr.io/stigmer/agent-runner", digest: None };
        let version = semver::Version::parse("1.3.0-rc.1").unwrap();
        let artifacts: Vec<_> =
            artifacts().into_iter().map(|(name, sha)| (name.replace("1.3.0", "1.3.0-rc.1"), sha)).collect();
        let stays = formula(false, "a pre-release never moves the formula");
        let notes = render(&version, CHANGES, &image, &artifacts, &stays);
        insta::assert_snapshot!(notes);
    }

    #[test]
    fn a_snapshot_says_what_was_built_and_skipped_and_offers_no_download() {
        let image = Image::Snapshot {
            built: Some("stigmer-agent-runner:local (linux/amd64)".to_owned()),
            skipped: vec!["linux/arm64: a snapshot builds this machine's platform only".to_owned()],
        };
        let version = semver::Version::parse("1.3.1-snapshot-abc1234").unwrap();
        let artifacts: Vec<_> = artifacts()
            .into_iter()
            .map(|(name, sha)| (name.replace("1.3.0", "1.3.1-snapshot-abc1234"), sha))
            .collect();
        let stays = formula(false, "a snapshot is never published");
        let notes = render(&version, CHANGES, &image, &artifacts, &stays);
        assert!(!notes.contains("https://"), "{notes}");
        insta::assert_snapshot!(notes);
    }
}
