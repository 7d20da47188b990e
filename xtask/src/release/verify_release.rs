//! `cargo xtask verify-release vX.Y.Z`: checks one published release as a whole, the
//! way a user can: the downloaded assets against checksums.txt and its signature, the
//! image index (`verify::verify`) and its signature, SBOM and provenance, the digest
//! each tarball's CLI pins (read from the binary, never run), the Homebrew formula in
//! the tap (the newest release, as `Pointer::expected` says), the release notes, that
//! checksums.txt lists one archive per target and install.sh, and that every floating tag of the
//! release's lines names the newest release of its line the registry has published.
//! Every check runs; one table (or `--json`) reports them all. With `--rebuild` it also
//! builds the archives and the image's platforms again from the release's tag and
//! compares their bytes (`rebuild.rs`).
//!
//! It reads only what it is pointed at (the asset directory or download URL, the notes,
//! the registry, the tap) and writes nothing but temporary copies (downloads, the tap's
//! clone).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::json;
use xshell::{cmd, Shell};

use crate::{
    dist::{self, checksums},
    flags,
    plan::{self, ReleasePlan},
    platform::{Platform, Target},
    pointer::Pointer,
    publish::{
        sign::{self, Verifier, CHECKSUMS_BUNDLE},
        verify,
    },
    registry::{
        digest::sha256_hex,
        document::{self, is_attestation, Document},
        oci::{self, Registry, Repository},
    },
    release::{
        homebrew::{self, FORMULA},
        rebuild::{self, Rebuild},
        release_notes::NOTES,
    },
    version,
};

/// The in-toto predicate types an SBOM and a provenance carry, in BuildKit's in-index
/// attestations and in cosign's.
const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
const PROVENANCE_PREDICATE: &str = "https://slsa.dev/provenance/";

impl flags::VerifyRelease {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let from_plan = match &self.plan {
            Some(path) => Some(ReleasePlan::read(&sh.current_dir().join(path))?),
            None => None,
        };
        let version = match (&from_plan, &self.version) {
            (Some(plan), _) => plan.version.clone(),
            (None, Some(text)) => version::parse(text)?,
            (None, None) => bail!("give the version to verify (vX.Y.Z) or --plan"),
        };
        if version::is_snapshot(&version) || from_plan.as_ref().is_some_and(|plan| plan.dry_run) {
            bail!("v{version} is a dry run's version: nothing was published to verify");
        }
        let repository: Repository = match &from_plan {
            Some(plan) => plan.repository()?,
            None => format!("{}/agent-runner", self.registry.trim_end_matches('/')).parse()?,
        };
        let tag = version::tag(&version);
        let verifier = match &self.key {
            Some(key) => Verifier::Key(sh.current_dir().join(key)),
            None => match &self.certificate_identity {
                Some(identity) => Verifier::Identity {
                    identity: identity.clone(),
                    issuer: self.certificate_oidc_issuer.clone(),
                },
                None => sign::release_identity(&self.repo, &tag, &self.certificate_oidc_issuer),
            },
        };
        let downloaded = match &self.url {
            Some(url) => Some(download(sh, url)?),
            None => None,
        };
        let dir = match &downloaded {
            Some(temp) => temp.path().to_owned(),
            None => sh.current_dir().join(&self.dir),
        };
        let notes = self.notes.as_ref().map_or_else(|| dir.join(NOTES), |notes| sh.current_dir().join(notes));
        let registry = oci::connect(sh, &repository, None)?;
        let release = Release {
            version,
            tag,
            repository,
            dir,
            notes,
            tap: self.tap.clone(),
            repo: self.repo.clone(),
            verifier,
            plan: from_plan,
            rebuild: self.rebuild.then(|| Rebuild {
                source: self.source.clone().unwrap_or_else(|| format!("https://github.com/{}", self.repo)),
                targets: self.targets.clone(),
                platforms: self.platforms.clone(),
            }),
        };
        let checks = oci::block_on(check_all(sh, &release, &registry))?;
        let failed: Vec<&Check> = checks.iter().filter(|check| check.result.is_err()).collect();
        if self.json {
            let rows: Vec<_> = checks
                .iter()
                .map(|c| {
                    json!({
                        "check": c.check, "subject": c.subject, "ok": c.result.is_ok(),
                        "result": match &c.result { Ok(text) | Err(text) => text },
                    })
                })
                .collect();
            let report = json!({ "release": release.tag, "ok": failed.is_empty(), "checks": rows });
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", table(&checks));
        }
        if !failed.is_empty() {
            let lines: Vec<String> = failed
                .iter()
                .map(|c| format!("{} {}: {}", c.check, c.subject, c.result.as_ref().unwrap_err()))
                .collect();
            bail!("release {} failed {} check(s):\n  - {}", release.tag, failed.len(), lines.join("\n  - "));
        }
        if !self.json {
            println!("release {} verified: {} checks passed", release.tag, checks.len());
        }
        Ok(())
    }
}

/// checksums.txt, its bundle and every file checksums.txt lists, from the release's
/// download URL into a temporary directory. What cannot be downloaded is left out, and
/// the checks name it missing.
fn download(sh: &Shell, url: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let base = url.trim_end_matches('/');
    let fetch = |name: &str| {
        let (from, to) = (format!("{base}/{name}"), dir.path().join(name));
        cmd!(sh, "curl --fail --silent --show-error --location --retry 3 --output {to} {from}").quiet().run()
    };
    fetch(checksums::CHECKSUMS).with_context(|| {
        format!("downloading {base}/{}: is --url the release's download URL?", checksums::CHECKSUMS)
    })?;
    let _ = fetch(CHECKSUMS_BUNDLE);
    for (name, _) in checksums::read(&dir.path().join(checksums::CHECKSUMS))? {
        if name.contains('/') || name.starts_with('.') {
            bail!("checksums.txt at {base} names {name:?}, which is not a release asset");
        }
        let _ = fetch(&name);
    }
    Ok(dir)
}

/// What one release is checked against.
struct Release {
    version: semver::Version,
    tag: String,
    repository: Repository,
    dir: PathBuf,
    notes: PathBuf,
    tap: String,
    repo: String,
    verifier: Verifier,
    plan: Option<ReleasePlan>,
    /// `--rebuild`: the archives built again from the tag.
    rebuild: Option<Rebuild>,
}

/// One row of the report: what was checked, on what, and the outcome (`Err` says what
/// is wrong).
struct Check {
    check: &'static str,
    subject: String,
    result: Result<String, String>,
}

fn row(check: &'static str, subject: impl Into<String>, result: Result<String, String>) -> Check {
    Check { check, subject: subject.into(), result }
}

fn table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.subject.len()).max().unwrap_or(0).min(72);
    let mut out = format!("{:<16} {:<width$}  result\n", "check", "subject");
    for c in checks {
        let result = match &c.result {
            Ok(text) => format!("ok: {text}"),
            Err(text) => format!("FAILED: {text}"),
        };
        out += &format!("{:<16} {:<width$}  {result}\n", c.check, c.subject);
    }
    out
}

async fn check_all(sh: &Shell, release: &Release, registry: &Registry) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let sums = check_checksums(sh, release, &mut checks);
    checks.push(check_archives(release, &sums));
    // The installer is checked above like every asset; it holds no CLI and is not in
    // the formula.
    let archives: Vec<(String, String)> =
        sums.iter().filter(|(name, _)| name != checksums::INSTALLER).cloned().collect();
    let digest = check_image(sh, release, registry, &mut checks).await?;
    let unverified = || Err("not checked: the index did not verify".to_owned());
    for (name, _) in &archives {
        let path = release.dir.join(name);
        let result = match (&digest, path.exists()) {
            (_, false) => Err(format!("{name} is missing from {}", release.dir.display())),
            (None, true) => unverified(),
            (Some(digest), true) => stamp_of(&path).and_then(|stamp| check_pin(stamp, release, digest)),
        };
        checks.push(row("cli pin", name.clone(), result));
    }
    if let Some(rebuild) = &release.rebuild {
        let rebuilt = match &digest {
            None => vec![(release.tag.clone(), unverified())],
            Some(digest) => {
                let published = rebuild::Published {
                    tag: &release.tag,
                    version: &release.version,
                    dir: &release.dir,
                    archives: &archives,
                    repository: &release.repository,
                    index_digest: digest,
                };
                rebuild::rebuild(sh, rebuild, &published, registry)
                    .await
                    .unwrap_or_else(|err| vec![(release.tag.clone(), Err(format!("{err:#}")))])
            }
        };
        checks.extend(rebuilt.into_iter().map(|(name, result)| row("rebuild", name, result)));
    }
    // Ours that the registry has published, and this release, which the checks above
    // find under its version tag.
    let mut published: Vec<semver::Version> =
        plan::released_images(sh, registry).await?.into_iter().map(|release| release.version).collect();
    if release.version.pre.is_empty() {
        published.push(release.version.clone());
    }
    // Homebrew serves macOS and Linux: the Windows zip is no formula's.
    let brewed: Vec<(String, String)> = archives
        .iter()
        .filter(|(name, _)| checksums::Archive::parse(name).is_none_or(|archive| archive.target.is_unix()))
        .cloned()
        .collect();
    checks.push(check_formula(sh, release, &brewed, &published));
    checks.push(match &digest {
        Some(digest) => check_notes(release, digest),
        None => row("notes", release.notes.display().to_string(), unverified()),
    });
    match &digest {
        Some(digest) => check_pointers(release, registry, digest, &published, &mut checks).await?,
        None => checks.push(row("pointers", release.repository.to_string(), unverified())),
    }
    Ok(checks)
}

/// Every tarball against checksums.txt, and checksums.txt's signature; returns the
/// (name, sha256) pairs checksums.txt lists (none when it cannot be read).
fn check_checksums(sh: &Shell, release: &Release, checks: &mut Vec<Check>) -> Vec<(String, String)> {
    let path = release.dir.join(checksums::CHECKSUMS);
    let sums = match checksums::read(&path) {
        Ok(sums) if sums.is_empty() => {
            checks.push(row("checksum", checksums::CHECKSUMS, Err("checksums.txt lists no file".to_owned())));
            return sums;
        }
        Ok(sums) => sums,
        Err(err) => {
            checks.push(row("checksum", checksums::CHECKSUMS, Err(format!("{err:#}"))));
            return Vec::new();
        }
    };
    for (name, expected) in &sums {
        let result = match std::fs::read(release.dir.join(name)) {
            Err(_) => Err(format!("missing from {}: download it from the release", release.dir.display())),
            Ok(bytes) => match sha256_hex(&bytes) {
                actual if actual == *expected => Ok(format!("sha256 {actual}")),
                actual => Err(format!("sha256 is {actual}, checksums.txt says {expected}")),
            },
        };
        let result = match checksums::Archive::parse(name) {
            Some(archive) if archive.version != release.version => {
                Err(format!("an archive of v{}, not of {}", archive.version, release.tag))
            }
            _ => result,
        };
        checks.push(row("checksum", name.clone(), result));
    }
    for archive in checksums::archives(&release.dir).unwrap_or_default() {
        if archive.version == release.version && !sums.iter().any(|(name, _)| *name == archive.name) {
            checks.push(row("checksum", archive.name, Err("not listed in checksums.txt".to_owned())));
        }
    }
    let bundle = release.dir.join(CHECKSUMS_BUNDLE);
    let result = if !bundle.exists() {
        Err(format!(
            "{CHECKSUMS_BUNDLE} is missing from {}: download it from the release",
            release.dir.display()
        ))
    } else {
        match sign::verify_blob(sh, &release.verifier, &path, &bundle) {
            Ok(Ok(())) => Ok(format!("signed by {}", release.verifier.describe())),
            Ok(Err(why)) => Err(format!("not signed by {}: {why}", release.verifier.describe())),
            Err(err) => Err(format!("{err:#}")),
        }
    };
    checks.push(row("signature", checksums::CHECKSUMS, result));
    sums
}

/// The index under the version tag (`verify-image`), its signature, SBOM and
/// provenance; returns its digest when it verified.
async fn check_image(
    sh: &Shell,
    release: &Release,
    registry: &Registry,
    checks: &mut Vec<Check>,
) -> anyhow::Result<Option<String>> {
    let tagged = format!("{}:{}", release.repository, release.tag);
    let platforms = match &release.plan {
        Some(plan) => plan.platforms()?,
        None => Platform::ALL.to_vec(),
    };
    let report = match verify::verify(registry, &release.tag, &platforms, None, &[]).await {
        Ok(report) => report,
        Err(err) => {
            checks.push(row("image", tagged, Err(format!("{err:#}"))));
            return Ok(None);
        }
    };
    let digest = report.index_digest.clone();
    let names: Vec<&str> = report.platforms.iter().map(|p| p.platform.as_str()).collect();
    checks.push(row("image", tagged, Ok(format!("{digest} ({})", names.join(", ")))));
    let reference = format!("{}@{digest}", release.repository);
    let result = match sign::verify_image(sh, &release.verifier, &reference, None)? {
        Ok(()) => Ok(format!("signed by {}", release.verifier.describe())),
        Err(why) => Err(format!("not signed by {}: {why}", release.verifier.describe())),
    };
    checks.push(row("image signature", reference.clone(), result));

    let in_index = in_index_predicates(registry, &digest).await?;
    for (check, predicate, cosign_types) in [
        ("sbom", SPDX_PREDICATE, &["spdxjson"][..]),
        ("provenance", PROVENANCE_PREDICATE, &["slsaprovenance1", "slsaprovenance"][..]),
    ] {
        let result = if in_index.iter().any(|found| found.starts_with(predicate)) {
            Ok("in the index (BuildKit's attestation manifests, covered by its signature)".to_owned())
        } else {
            let mut outcome = Err(format!(
                "neither in the index nor a cosign attestation signed by {}",
                release.verifier.describe()
            ));
            for kind in cosign_types {
                if sign::verify_attestation(sh, &release.verifier, &reference, kind, None)?.is_ok() {
                    outcome =
                        Ok(format!("a cosign {kind} attestation signed by {}", release.verifier.describe()));
                    break;
                }
            }
            outcome
        };
        checks.push(row(check, reference.clone(), result));
    }
    Ok(Some(digest))
}

/// The in-toto predicate types of the index's attestation manifests (BuildKit's layout).
async fn in_index_predicates(registry: &Registry, digest: &str) -> anyhow::Result<Vec<String>> {
    let (bytes, _) = registry.manifest(digest).await?.context("the verified index vanished")?;
    let index = document::index(&bytes, digest)?;
    let mut predicates = Vec::new();
    for descriptor in index.manifests().iter().filter(|d| is_attestation(d)) {
        let entry = descriptor.digest().to_string();
        let Some((bytes, _)) = registry.manifest(&entry).await? else { continue };
        let Document::Image(manifest) = Document::parse(&bytes, &entry)? else { continue };
        for layer in manifest.layers() {
            if let Some(predicate) =
                layer.annotations().as_ref().and_then(|a| a.get("in-toto.io/predicate-type"))
            {
                predicates.push(predicate.clone());
            }
        }
    }
    Ok(predicates)
}

/// The stamp of the `stigmer` binary in an archive, read from its bytes: the binary is
/// never run (it may be another platform's).
fn stamp_of(archive: &Path) -> Result<Option<dist::cli_stamp::Stamp>, String> {
    let read = || -> anyhow::Result<Option<dist::cli_stamp::Stamp>> {
        let binary = dist::read_binary(archive)?;
        dist::cli_stamp::read(&binary).map_err(|err| anyhow::anyhow!("the stigmer binary: {err}"))
    };
    read().map_err(|err| format!("{err:#}"))
}

/// A CLI of this release runs the verified index: its stamp names this version and
/// pins `digest`.
fn check_pin(
    stamp: Option<dist::cli_stamp::Stamp>,
    release: &Release,
    digest: &str,
) -> Result<String, String> {
    let Some(stamp) = stamp else {
        return Err("the stigmer binary carries no stamp: it was not built by `cargo xtask dist`".to_owned());
    };
    if stamp.version != release.version.to_string() {
        return Err(format!("the stigmer binary is stamped v{}, not {}", stamp.version, release.tag));
    }
    match stamp.image_digest {
        Some(pinned) if pinned == digest => Ok(format!("stigmer pins {digest}")),
        Some(pinned) => Err(format!("the stigmer binary pins {pinned}, not the verified {digest}")),
        None => Err("the stigmer binary pins no image digest".to_owned()),
    }
}

/// Every distinct `sha256:` followed by 64 hex digits in `bytes`, in order of appearance.
fn digests_in(bytes: &[u8]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let marker = b"sha256:";
    let mut at = 0;
    while let Some(offset) = bytes[at..].windows(marker.len()).position(|w| w == marker) {
        let start = at + offset + marker.len();
        let hex = &bytes[start..bytes.len().min(start + 64)];
        if hex.len() == 64 && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            let digest = format!("sha256:{}", String::from_utf8_lossy(hex));
            if !found.contains(&digest) {
                found.push(digest);
            }
        }
        at = start;
    }
    found
}

/// checksums.txt lists exactly the assets the release makes: one archive per target,
/// and the installer.
fn check_archives(release: &Release, sums: &[(String, String)]) -> Check {
    let mut expected: Vec<String> =
        Target::ALL.iter().map(|target| target.archive_name(&release.version)).collect();
    expected.push(checksums::INSTALLER.to_owned());
    let mut problems: Vec<String> = expected
        .iter()
        .filter(|name| !sums.iter().any(|(listed, _)| listed == *name))
        .map(|name| format!("{name} is not in checksums.txt"))
        .collect();
    problems.extend(
        sums.iter()
            .filter(|(listed, _)| !expected.contains(listed))
            .map(|(listed, _)| format!("{listed} is not an archive of {}", release.tag)),
    );
    let result = match problems.is_empty() {
        true => Ok(format!(
            "one archive for each of the {} targets, and {}",
            expected.len() - 1,
            checksums::INSTALLER
        )),
        false => Err(problems.join("; ")),
    };
    row("archives", checksums::CHECKSUMS, result)
}

/// The tap's formula (as its default branch has it) names the newest release, and when
/// that is this one, checksums.txt's URLs and sha256s.
fn check_formula(
    sh: &Shell,
    release: &Release,
    sums: &[(String, String)],
    published: &[semver::Version],
) -> Check {
    let subject = format!("{} {FORMULA}", release.tap);
    let formula = match read_formula(sh, &release.tap) {
        Ok(formula) => formula,
        Err(err) => return row("formula", subject, Err(format!("{err:#}"))),
    };
    let version = homebrew::formula_version(&formula);
    // The formula follows `latest`: the newest final release published, this one or not.
    let expected = Pointer::Latest.expected(published);
    match (version, expected) {
        (None, _) => return row("formula", subject, Err("names no version".to_owned())),
        (Some(at), Some(expected)) if at == *expected && at != release.version => {
            return row("formula", subject, Ok(format!("names {at}, the newest release")))
        }
        (Some(at), Some(expected)) if at != *expected => {
            return row(
                "formula",
                subject,
                Err(format!(
                    "names {at}, not {expected}, the newest release: the homebrew job did not finish"
                )),
            )
        }
        (Some(at), None) => {
            return row("formula", subject, Err(format!("names {at}, but no final release is published")))
        }
        (Some(_), Some(_)) => {}
    }
    // `url "..."` then `sha256 "..."`, as homebrew.rs renders each platform.
    let quoted = |line: &str, key: &str| -> Option<String> {
        Some(line.trim().strip_prefix(key)?.trim().strip_prefix('"')?.strip_suffix('"')?.to_owned())
    };
    let mut pairs = Vec::new();
    let mut url = None;
    for line in formula.lines() {
        if let Some(found) = quoted(line, "url ") {
            url = Some(found);
        } else if let (Some(sha256), Some(found)) = (quoted(line, "sha256 "), url.take()) {
            pairs.push((found, sha256));
        }
    }
    let base = format!("https://github.com/{}/releases/download/{}/", release.repo, release.tag);
    let mut problems = Vec::new();
    for (name, sha256) in sums {
        let expected = format!("{base}{name}");
        match pairs.iter().find(|(url, _)| *url == expected) {
            None => problems.push(format!("{name} is not in the formula")),
            Some((_, named)) if named != sha256 => {
                problems.push(format!("{name}: the formula says sha256 {named}, checksums.txt {sha256}"))
            }
            Some(_) => {}
        }
    }
    for (url, _) in &pairs {
        if !sums.iter().any(|(name, _)| format!("{base}{name}") == *url) {
            problems.push(format!("{url} is not in checksums.txt"));
        }
    }
    match problems.is_empty() {
        true => row("formula", subject, Ok(format!("{} URLs and sha256s as in checksums.txt", pairs.len()))),
        false => row("formula", subject, Err(problems.join("; "))),
    }
}

/// Formula/stigmer.rb as the tap's default branch has it: a shallow clone of `tap` (a
/// URL or a path), so the check sees what `brew` would fetch, not a work tree.
fn read_formula(sh: &Shell, tap: &str) -> anyhow::Result<String> {
    let clone = tempfile::tempdir()?;
    let dest = clone.path().join("tap");
    // A path as a file:// URL: git ignores --depth for a plain local path.
    let source = match Path::new(tap) {
        path if path.exists() => format!("file://{}", sh.current_dir().join(path).display()),
        _ => tap.to_owned(),
    };
    cmd!(sh, "git clone --quiet --depth 1 {source} {dest}")
        .quiet()
        .run()
        .with_context(|| format!("cloning the tap {tap} (give --tap URL or path)"))?;
    std::fs::read_to_string(dest.join(FORMULA)).with_context(|| format!("the tap {tap} has no {FORMULA}"))
}

/// The notes name the verified index, and no other.
fn check_notes(release: &Release, digest: &str) -> Check {
    let subject = release.notes.display().to_string();
    let text = match std::fs::read_to_string(&release.notes) {
        Ok(text) => text,
        Err(_) => {
            return row(
                "notes",
                subject,
                Err(format!(
                    "cannot read them: save the release's notes there (`gh release view {} --json body --jq .body`)",
                    release.tag
                )),
            )
        }
    };
    let named: Vec<String> = digests_in(text.as_bytes())
        .into_iter()
        .filter(|d| text.contains(&format!("@{d}")) || text.contains(&format!("`{d}`")))
        .collect();
    let result = match named.as_slice() {
        [] => Err("name no image digest".to_owned()),
        [one] if one == digest => Ok(format!("name {}@{digest}", release.repository)),
        others => Err(format!("name {}, not the verified {digest}", others.join(", "))),
    };
    row("notes", subject, result)
}

/// Each floating tag of the release's lines names the highest release of its line that
/// the registry has published (`Pointer::expected`), whichever release moved it last;
/// a line with no final release published has no tag naming this release. A pre-release's
/// lines are read too: none of their tags may name it.
async fn check_pointers(
    release: &Release,
    registry: &Registry,
    digest: &str,
    published: &[semver::Version],
    checks: &mut Vec<Check>,
) -> anyhow::Result<()> {
    for pointer in Pointer::lines_of(&release.version) {
        let tag = pointer.tag();
        let subject = format!("{}:{tag}", release.repository);
        let current = registry.manifest(&tag).await?.map(|(_, at)| at);
        let result = match pointer.expected(published) {
            None if current.as_deref() == Some(digest) => {
                Err(format!("names {}, which is not a final release of its line", release.tag))
            }
            None => Ok("no release of its line is published".to_owned()),
            Some(expected) => {
                let expected_tag = version::tag(expected);
                let expected_digest = match expected == &release.version {
                    true => Some(digest.to_owned()),
                    false => registry.manifest(&expected_tag).await?.map(|(_, at)| at),
                };
                match current {
                    None => {
                        Err(format!("does not exist; it should name {expected_tag}, the newest of its line"))
                    }
                    Some(at) if Some(&at) == expected_digest.as_ref() => {
                        Ok(format!("names {expected_tag}, the newest of its line"))
                    }
                    Some(at) => Err(format!("names {at}, not {expected_tag}, the newest of its line")),
                }
            }
        };
        checks.push(row("pointer", subject, result));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_found_whole_and_once() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let text = format!("`{a}` junk sha256:abc sha256:ABC{} {b}0123abc @{a}", "d".repeat(64));
        assert_eq!(digests_in(text.as_bytes()), [a, b]);
    }
}
