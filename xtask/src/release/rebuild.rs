//! `verify-release --rebuild`: the archives checked against the sources they came from,
//! not only against a signature. The release's tag is cloned into a temporary directory
//! and `dist` builds there the archives asked for, stamped as release.yml's CLI jobs
//! stamp them (the release's version, the tag's commit and its time, the verified image
//! digest); each rebuilt archive's sha256 is then compared with checksums.txt. The same
//! bytes show that the archive is what the tag's sources build with the toolchain
//! `rust-toolchain.toml` pins; other bytes name the archive and the first entry in it
//! that differs.
//!
//! A rebuild compiles: cargo builds the CLI in the clone and `dist` never takes a binary
//! it kept from an earlier build of the same inputs (`Reuse::Never`). Cargo's target
//! directory is the caller's (`dist::cargo_target_dir`), so dependencies
//! compiled before are reused; the CLI itself is compiled and linked again, at another
//! path than the release's.

use std::path::Path;

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::{
    dist::{self, checksums::Archive, Reuse, Stamp},
    platform::Target,
    project,
    registry::digest::sha256_hex,
};

/// What to rebuild, and from where.
pub(crate) struct Rebuild {
    /// A git URL or path that has the release's tag.
    pub(crate) source: String,
    /// The targets whose archives to rebuild: every one checksums.txt lists when empty.
    pub(crate) targets: Vec<Target>,
}

/// Rebuilds the chosen archives of `listed` (checksums.txt's names and sha256s) from
/// `tag` and returns, for each, its name and whether the bytes are the same; `published`
/// is the directory with the release's own copies, to name what differs.
pub(crate) fn archives(
    sh: &Shell,
    rebuild: &Rebuild,
    published: &Path,
    tag: &str,
    version: &semver::Version,
    image_digest: &str,
    listed: &[(String, String)],
) -> anyhow::Result<Vec<(String, Result<String, String>)>> {
    let chosen: Vec<(Archive, &str)> = listed
        .iter()
        .filter_map(|(name, sha256)| Some((Archive::parse(name)?, sha256.as_str())))
        .filter(|(archive, _)| rebuild.targets.is_empty() || rebuild.targets.contains(&archive.target))
        .collect();
    if chosen.is_empty() {
        bail!("checksums.txt lists no archive of the targets to rebuild");
    }
    // release.yml stamps the commit's time: a SOURCE_DATE_EPOCH here would stamp another.
    if sh.var_os("SOURCE_DATE_EPOCH").is_some() {
        bail!("unset SOURCE_DATE_EPOCH: a release is stamped with its commit's time, which the rebuild reads from the tag");
    }
    let temp = tempfile::tempdir()?;
    let checkout = temp.path().join(format!("stigmer-{tag}"));
    let target_dir = dist::cargo_target_dir(sh);
    let source = &rebuild.source;
    eprintln!("==> rebuilding {} archive(s) of {tag} from {source}", chosen.len());
    cmd!(sh, "git -c advice.detachedHead=false clone --quiet --depth 1 --branch {tag} {source} {checkout}")
        .run()
        .with_context(|| format!("cloning {tag} from {source}: is --source the release's repository?"))?;
    // In the clone, with the caller's target directory, until the archives are built.
    let _in_clone = (sh.push_dir(&checkout), sh.push_env("CARGO_TARGET_DIR", &target_dir));
    let commit = project::git_revision(sh);
    let stamp = Stamp::of_checkout(sh, Some(version.clone()), Some(image_digest.to_owned()))?;
    let targets: Vec<Target> = chosen.iter().map(|(archive, _)| archive.target).collect();
    let out = temp.path().join("dist");
    dist::dist_with(sh, &targets, &stamp, &out, Reuse::Never)
        .with_context(|| format!("rebuilding the archives of {tag} ({commit})"))?;

    let mut results = Vec::new();
    for (archive, listed_sha256) in chosen {
        let rebuilt = out.join(&archive.name);
        let bytes = std::fs::read(&rebuilt).with_context(|| format!("reading {}", rebuilt.display()))?;
        let sha256 = sha256_hex(&bytes);
        let result = if sha256 == listed_sha256 {
            Ok(format!("rebuilt from {tag} ({}): the same bytes", &commit[..commit.len().min(12)]))
        } else {
            let differs = match first_difference(&rebuilt, &published.join(&archive.name)) {
                Some(entry) => format!("; {entry} differs first"),
                None => String::new(),
            };
            Err(format!(
                "rebuilt from {tag} ({commit}) it is sha256 {sha256}, checksums.txt says {listed_sha256}{differs}"
            ))
        };
        results.push((archive.name, result));
    }
    Ok(results)
}

/// The first entry (by the rebuilt archive's order) whose bytes differ from the
/// published archive's, or that only one of them has; `None` when the published one
/// cannot be read or they hold the same entries (then only the packing differs).
fn first_difference(rebuilt: &Path, published: &Path) -> Option<String> {
    let (rebuilt, published) = (dist::read_entries(rebuilt).ok()?, dist::read_entries(published).ok()?);
    let found = rebuilt.iter().find(|(name, bytes)| {
        published.iter().find(|(other, _)| other == name).is_none_or(|(_, other_bytes)| other_bytes != bytes)
    });
    let only_published =
        || published.iter().find(|(name, _)| !rebuilt.iter().any(|(other, _)| other == name));
    found.or_else(only_published).map(|(name, _)| name.clone())
}
