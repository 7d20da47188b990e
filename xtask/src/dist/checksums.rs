//! `cargo xtask checksums`: checksums.txt (GoReleaser's `<sha256>  <name>` lines, sorted
//! by name, so `sha256sum -c` passes) and manifest.json for the archives in a directory,
//! and the release's `install.sh` (rendered here from `install.sh` in this directory,
//! so it is made wherever the archives are gathered, and listed in checksums.txt).
//! `dist` calls it after every build; the release workflow calls it once the archives
//! of all runners are gathered. Reads archives, never builds them.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::json;
use xshell::Shell;

use crate::{
    files, flags,
    platform::Target,
    publish::sign::{self, Signer},
    registry::digest::sha256_hex,
    version,
};

pub(crate) const CHECKSUMS: &str = "checksums.txt";
pub(crate) const MANIFEST: &str = "manifest.json";
/// The installer, a release asset like the archives.
pub(crate) const INSTALLER: &str = "install.sh";

/// `install.sh` for `version`: the POSIX sh installer, with its version filled in.
pub(crate) fn installer(version: &semver::Version) -> String {
    include_str!("install.sh").replace("@VERSION@", &version.to_string())
}

impl flags::Checksums {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let dir = sh.current_dir().join(&self.dir);
        let archives = write(&dir)?;
        println!("wrote {CHECKSUMS} and {MANIFEST} for {} archive(s) in {}", archives.len(), dir.display());
        if let Some(signer) =
            Signer::from_flags(self.cosign_key.map(|key| sh.current_dir().join(key)), self.keyless)
        {
            let bundle = dir.join(sign::CHECKSUMS_BUNDLE);
            // Signed beside, then renamed: a failed signature leaves no bundle at all.
            let partial = dir.join(format!(".{}.partial", sign::CHECKSUMS_BUNDLE));
            sign::sign_blob(sh, &signer, &dir.join(CHECKSUMS), &partial)?;
            std::fs::rename(&partial, &bundle).with_context(|| format!("writing {}", bundle.display()))?;
            println!("signed {CHECKSUMS} ({}): {}", signer.describe(), bundle.display());
        }
        Ok(())
    }
}

/// A `stigmer-vX.Y.Z-<os>-<arch>.tar.gz` (`.zip` for Windows) found in a directory.
#[derive(Clone, Debug)]
pub(crate) struct Archive {
    pub(crate) name: String,
    pub(crate) version: semver::Version,
    pub(crate) target: Target,
}

impl Archive {
    /// `None` for any other file name: the directory may hold notes and the like.
    pub(crate) fn parse(name: &str) -> Option<Archive> {
        let stem = name.strip_prefix("stigmer-v")?;
        let stem = stem.strip_suffix(".tar.gz").or_else(|| stem.strip_suffix(".zip"))?;
        let mut parts = stem.rsplitn(3, '-');
        let (arch, os, version) = (parts.next()?, parts.next()?, parts.next()?);
        let archive = Archive {
            name: name.to_owned(),
            version: semver::Version::parse(version).ok()?,
            target: Target::from_os_arch(os, arch)?,
        };
        // A tarball of Windows or a zip of Linux is no archive `dist` makes.
        (archive.target.archive_name(&archive.version) == name).then_some(archive)
    }
}

/// The archives in `dir`, sorted by name; none when `dir` does not exist.
pub(crate) fn archives(dir: &Path) -> anyhow::Result<Vec<Archive>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut archives = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        if let Some(archive) = entry?.file_name().to_str().and_then(Archive::parse) {
            archives.push(archive);
        }
    }
    archives.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(archives)
}

/// Refuses a directory holding archives of another release: one checksums.txt must
/// describe one release. Another snapshot's archives are not refused: `dist` replaces
/// them (`discard_other_snapshots`).
pub(crate) fn refuse_other_versions(dir: &Path, version: &semver::Version) -> anyhow::Result<()> {
    let others: Vec<String> = archives(dir)?
        .into_iter()
        .filter(|archive| &archive.version != version && !version::is_snapshot(&archive.version))
        .map(|archive| archive.name)
        .collect();
    if !others.is_empty() {
        bail!(
            "{} holds archives of another version ({}): remove them or choose another --out",
            dir.display(),
            others.join(", ")
        );
    }
    Ok(())
}

/// Removes the archives of snapshots other than `version` from `dir`.
pub(crate) fn discard_other_snapshots(dir: &Path, version: &semver::Version) -> anyhow::Result<()> {
    for archive in archives(dir)? {
        if &archive.version != version && version::is_snapshot(&archive.version) {
            let path = dir.join(&archive.name);
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Writes checksums.txt and manifest.json for every archive in `dir`, and returns them.
pub(crate) fn write(dir: &Path) -> anyhow::Result<Vec<Archive>> {
    let archives = archives(dir)?;
    let Some(first) = archives.first() else {
        bail!("{} holds no stigmer-v*.tar.gz or .zip archives: run `cargo xtask dist` first", dir.display());
    };
    let version = first.version.clone();
    if archives.iter().any(|archive| archive.version != version) {
        let names: Vec<&str> = archives.iter().map(|archive| archive.name.as_str()).collect();
        bail!(
            "{} holds archives of several versions ({}): keep one version's",
            dir.display(),
            names.join(", ")
        );
    }

    let installer = installer(&version);
    files::write_atomically(&dir.join(INSTALLER), installer.as_bytes())?;
    // `install.sh` sorts before every `stigmer-v…`.
    let mut checksums = format!("{}  {INSTALLER}\n", sha256_hex(installer.as_bytes()));
    let mut artifacts = Vec::new();
    for archive in &archives {
        let bytes =
            std::fs::read(dir.join(&archive.name)).with_context(|| format!("reading {}", archive.name))?;
        let sha256 = sha256_hex(&bytes);
        checksums.push_str(&format!("{sha256}  {}\n", archive.name));
        artifacts.push(json!({
            "name": archive.name,
            "target": archive.target.triple(),
            "os": archive.target.os(),
            "arch": archive.target.arch(),
            "size": bytes.len(),
            "sha256": sha256,
        }));
    }
    let manifest = json!({ "version": version.to_string(), "artifacts": artifacts });
    // A signature of other checksums must not sit beside these.
    let bundle = dir.join(sign::CHECKSUMS_BUNDLE);
    if bundle.exists() && std::fs::read(dir.join(CHECKSUMS)).ok().as_deref() != Some(checksums.as_bytes()) {
        std::fs::remove_file(&bundle).with_context(|| format!("removing the stale {}", bundle.display()))?;
    }
    files::write_atomically(&dir.join(CHECKSUMS), checksums.as_bytes())?;
    files::write_atomically(
        &dir.join(MANIFEST),
        format!("{}\n", serde_json::to_string_pretty(&manifest)?).as_bytes(),
    )?;
    Ok(archives)
}

/// Reads checksums.txt into (file name, sha256) pairs.
pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("reading {}: run `cargo xtask dist` or `cargo xtask checksums` first", path.display())
    })?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split_once("  ") {
            Some((sha256, name)) if sha256.len() == 64 => Ok((name.to_owned(), sha256.to_owned())),
            _ => bail!("{}: not a `<sha256>  <file>` line: {line:?}", path.display()),
        })
        .collect()
}
