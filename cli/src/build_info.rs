//! What this binary was built from: the stamp `cargo xtask dist` writes into the linked
//! binary (`stamp.rs` has the format and why it is written after linking). A plain
//! `cargo build` has no stamp and says so, rather than guessing a revision or a date.

use std::sync::OnceLock;

use crate::stamp::{self, Stamp};

/// The block `dist` fills in. `#[used]` keeps it through LTO and strip; the volatile
/// read below keeps the compiler from folding the blank it sees at compile time into
/// the code, so the bytes written into the file are what the binary reads.
#[used]
static STAMP_BLOCK: [u8; stamp::BLOCK_LEN] = stamp::blank();

fn stamp() -> Option<&'static Stamp> {
    static STAMP: OnceLock<Option<Stamp>> = OnceLock::new();
    STAMP
        .get_or_init(|| {
            // SAFETY: a read of an initialized static through a valid, aligned pointer.
            let block = unsafe { std::ptr::read_volatile(&STAMP_BLOCK) };
            stamp::read_block(&block)
        })
        .as_ref()
}

/// The version users see: `X.Y.Z`, or `X.Y.(Z+1)-snapshot-<sha>` for a snapshot build.
/// It also names the image tag the CLI pulls when it has no pinned digest.
pub(crate) fn version() -> &'static str {
    stamp().map_or(env!("CARGO_PKG_VERSION"), |stamp| &stamp.version)
}

/// The agent-runner index digest published with this version, when the build knew it:
/// the CLI then pulls the image by digest, so a moved tag cannot change what runs.
pub(crate) fn image_digest() -> Option<&'static str> {
    stamp()?.image_digest.as_deref()
}

/// Where released agent-runner images live (`STIGMER_REGISTRY` overrides it at run time).
pub(crate) const DEFAULT_REGISTRY: &str = "ghcr.io/stigmer";

/// The published agent-runner image a build of `version` runs from `repository`: the
/// pinned digest when the build has one (a moved tag cannot change what runs), else the
/// tag of the stamped version, the one `--version` prints. A snapshot so asks for its
/// own tag (`v0.2.1-snapshot-abc1234`), never for the release it was built after.
pub(crate) fn published_image(repository: &str, version: &str, digest: Option<&str>) -> String {
    match digest {
        Some(digest) => format!("{repository}@{digest}"),
        None => format!("{repository}:v{version}"),
    }
}

/// Whether `version` is a snapshot's (`X.Y.Z-snapshot-<sha>`, what `cargo xtask release
/// --snapshot` stamps): its image is built locally and never published.
pub(crate) fn is_snapshot(version: &str) -> bool {
    version.split_once('-').is_some_and(|(_, pre)| pre.starts_with("snapshot-"))
}

/// Whether `cargo xtask dist` built this binary (a release or a snapshot), rather than
/// a plain `cargo build`.
pub(crate) fn is_released() -> bool {
    stamp().is_some()
}

/// `stigmer --version`: the version, revision, build date and the image this CLI runs.
pub(crate) fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let (version, digest) = (version(), image_digest());
        let image = published_image(&format!("{DEFAULT_REGISTRY}/agent-runner"), version, digest);
        let image = match digest {
            Some(_) => format!("{image} (v{version}, pinned)"),
            None => image,
        };
        format!(
            "{version}\nrevision:      {}\nbuilt:         {}\nagent-runner:  {image}",
            stamp().map_or("unknown (not built by `cargo xtask dist`)", |stamp| &stamp.revision),
            stamp().map_or("unknown", |stamp| &stamp.date),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOSITORY: &str = "ghcr.io/stigmer/agent-runner";
    const DIGEST: &str = "sha256:4c3a0e4c1b1f8c6a4d3b2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";

    #[test]
    fn an_unstamped_build_runs_the_image_of_its_cargo_version() {
        // `cargo test` stamps nothing: the version is Cargo.toml's.
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
        assert_eq!(image_digest(), None);
        assert!(!is_released());
        assert_eq!(
            published_image(REPOSITORY, version(), image_digest()),
            format!("{REPOSITORY}:v{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn a_stamped_build_runs_the_image_of_its_stamped_version() {
        assert_eq!(published_image(REPOSITORY, "0.2.0", None), format!("{REPOSITORY}:v0.2.0"));
    }

    /// The stamped version, not Cargo.toml's: a snapshot of 0.1.0 is 0.1.1-snapshot-<sha>,
    /// and must not run the 0.1.0 release's image.
    #[test]
    fn a_snapshot_build_asks_for_its_own_tag_never_a_releases() {
        for version in ["0.1.1-snapshot-abc1234", "1.3.0-snapshot-abc1234.dirty"] {
            let image = published_image(REPOSITORY, version, None);
            assert_eq!(image, format!("{REPOSITORY}:v{version}"));
            assert!(is_snapshot(version), "{version}");
            // A valid tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
            let tag = image.rsplit_once(':').unwrap().1;
            assert!(
                tag.len() <= 128 && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
                "{tag}"
            );
        }
        assert!(!is_snapshot("0.1.0") && !is_snapshot("1.3.0-rc.1"));
    }

    #[test]
    fn a_pinned_digest_wins_over_any_version() {
        for version in ["0.1.0", "0.2.0", "0.1.1-snapshot-abc1234"] {
            assert_eq!(published_image(REPOSITORY, version, Some(DIGEST)), format!("{REPOSITORY}@{DIGEST}"));
        }
    }
}
