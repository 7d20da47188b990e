//! `cargo xtask github-release`: makes the GitHub release of a tag with the `gh` CLI:
//! a draft first, then the assets GitHub does not have yet (compared by sha256, which
//! GitHub reports per asset), then publish. A rerun finishes a half-done release; a
//! published release is never changed.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::{
    dist::checksums,
    flags, github,
    plan::{self, ReleasePlan},
    pointer::{Current, Decision, Pointer},
    publish::sign,
    registry::digest::sha256_digest,
    release::release_notes,
};

impl flags::GithubRelease {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let release =
            plan::load(sh, self.plan.as_deref(), self.version.as_deref(), &self.registry, self.dry_run)?;
        let dry_run = self.dry_run || release.dry_run;
        let version = &release.version;
        let tag = release.tag.clone();
        let dir = sh.current_dir().join(&self.dir);
        let notes = dir.join(release_notes::NOTES);
        if !notes.exists() {
            bail!("{} is missing: run `cargo xtask release-notes --version {tag}` first", notes.display());
        }
        let local = local_assets(&dir)?;
        if !dry_run && !local.iter().any(|(name, _)| name == sign::CHECKSUMS_BUNDLE) {
            bail!(
                "{} has no {}: a release publishes signed checksums; run `cargo xtask checksums {} --keyless` \
                 (or --cosign-key FILE) first",
                dir.display(),
                sign::CHECKSUMS_BUNDLE,
                self.dir.display()
            );
        }
        let existing = match existing_release(sh, &tag) {
            Ok(existing) => existing,
            // GitHub's API cannot be reached from our machines: a dry run there still
            // shows the whole plan, as for a release GitHub does not have yet.
            Err(err) if dry_run => {
                println!("note: could not ask GitHub ({err:#}); planning as if {tag} had no release yet");
                None
            }
            Err(err) => return Err(err),
        };
        let plan = match plan(&local, existing.as_ref()) {
            Ok(plan) => plan,
            Err(err) if dry_run => {
                println!("dry run: the real run would refuse: {err:#}");
                return Ok(());
            }
            Err(err) => return Err(err),
        };

        match &existing {
            None => println!(
                "create  draft release {tag}{}",
                if version.pre.is_empty() { "" } else { " (pre-release)" }
            ),
            Some(release) if release.draft => println!("finish  draft release {tag}"),
            Some(_) => println!("found   published release {tag}"),
        }
        for (name, action) in &plan {
            println!(
                "{:<7} {name}",
                match action {
                    Action::Upload => "upload",
                    Action::Keep => "keep",
                }
            );
        }
        if existing.as_ref().is_none_or(|release| release.draft) {
            let latest = if release.github_latest.moves { "as" } else { "not as" };
            println!("publish {tag}, {latest} GitHub's Latest ({})", release.github_latest.reason);
        }
        if dry_run {
            println!("dry run: nothing created or uploaded");
            return Ok(());
        }

        let title = format!("Stigmer {tag}");
        let prerelease = if version.pre.is_empty() { None } else { Some("--prerelease") };
        match &existing {
            None => cmd!(sh, "gh release create {tag} --draft --verify-tag --title {title} --notes-file {notes} {prerelease...}")
                .run()
                .context("creating the draft release")?,
            Some(release) if release.draft => cmd!(sh, "gh release edit {tag} --notes-file {notes}")
                .run()
                .context("updating the draft's notes")?,
            Some(_) => {}
        }
        let uploads: Vec<_> = plan
            .iter()
            .filter(|(_, action)| *action == Action::Upload)
            .map(|(name, _)| dir.join(name))
            .collect();
        if !uploads.is_empty() {
            cmd!(sh, "gh release upload {tag} --clobber {uploads...}")
                .run()
                .context("uploading the assets")?;
        }
        if existing.as_ref().is_none_or(|release| release.draft) {
            // Decided again over GitHub's releases as they are now: a rerun of an old
            // tag's job, with the plan of its first run, never takes Latest back.
            let latest = latest_now(sh, &release)?;
            println!("GitHub's Latest: {}", latest.reason);
            // Explicit both ways: GitHub's own default would make a backport Latest.
            let latest = if latest.moves { "--latest" } else { "--latest=false" };
            cmd!(sh, "gh release edit {tag} --draft=false {latest} {prerelease...}")
                .run()
                .context("publishing the release")?;
        }
        println!("{tag} is published with {} asset(s)", plan.len());
        Ok(())
    }
}

/// Whether this release becomes GitHub's Latest: `Pointer::decide` over what GitHub lists
/// at this moment, whatever the plan expected when the run began (a rerun's plan may be
/// stale). GitHub's Latest names the newest release GitHub has published: a newer
/// release whose image is out but whose GitHub job failed does not hold it back, or a
/// backport published meanwhile would leave GitHub with no Latest (`invariants::model`
/// found that sequence); that release's rerun moves Latest on to it.
fn latest_now(sh: &Shell, release: &ReleasePlan) -> anyhow::Result<Decision> {
    let listed = github::releases(sh)?;
    let current = github::latest(&listed).map_or(Current::Absent, Current::Version);
    Ok(Pointer::Latest.decide(&release.version, &github::published(&listed), &current))
}

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Upload,
    Keep,
}

struct Release {
    draft: bool,
    /// (name, "sha256:...") of each asset GitHub has.
    assets: Vec<(String, String)>,
}

/// The archives in checksums.txt, checksums.txt itself and its signature (when signed),
/// with their digests.
fn local_assets(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let checksums_path = dir.join(checksums::CHECKSUMS);
    let mut assets: Vec<(String, String)> = checksums::read(&checksums_path)?
        .into_iter()
        .map(|(name, sha256)| (name, format!("sha256:{sha256}")))
        .collect();
    for (name, digest) in &assets {
        let bytes = std::fs::read(dir.join(name))
            .with_context(|| format!("reading {name}, listed in checksums.txt"))?;
        if sha256_digest(&bytes) != *digest {
            bail!("{name} does not match checksums.txt: run `cargo xtask checksums` again");
        }
    }
    let bytes = std::fs::read(&checksums_path)?;
    assets.push((checksums::CHECKSUMS.to_owned(), sha256_digest(&bytes)));
    // The signature of checksums.txt, when it was signed (`checksums --keyless`).
    if let Ok(bundle) = std::fs::read(dir.join(sign::CHECKSUMS_BUNDLE)) {
        assets.push((sign::CHECKSUMS_BUNDLE.to_owned(), sha256_digest(&bundle)));
    }
    Ok(assets)
}

fn existing_release(sh: &Shell, tag: &str) -> anyhow::Result<Option<Release>> {
    let output = cmd!(sh, "gh release view {tag} --json isDraft,assets")
        .quiet()
        .ignore_status()
        .output()
        .context("running `gh` (the GitHub CLI: https://cli.github.com)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        if stderr.contains("release not found") {
            return Ok(None);
        }
        bail!("asking GitHub for release {tag}: {}", stderr.trim());
    }
    let json: Value = serde_json::from_slice(&output.stdout).context("reading `gh release view` output")?;
    let assets = json["assets"]
        .as_array()
        .map(|assets| {
            assets
                .iter()
                .map(|asset| {
                    (
                        asset["name"].as_str().unwrap_or("").to_owned(),
                        asset["digest"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Release { draft: json["isDraft"].as_bool().unwrap_or(false), assets }))
}

/// What to do with each local asset. A published release is final: an asset that
/// differs there is refused rather than replaced under users who downloaded it.
fn plan(local: &[(String, String)], existing: Option<&Release>) -> anyhow::Result<Vec<(String, Action)>> {
    let mut plan = Vec::new();
    for (name, digest) in local {
        let remote = existing.and_then(|release| release.assets.iter().find(|(remote, _)| remote == name));
        let action = match remote {
            Some((_, remote_digest)) if remote_digest == digest => Action::Keep,
            // A keyless signature differs each time it is made: a published bundle is
            // kept while GitHub's checksums.txt is the one it signed (the same digest).
            // With another checksums.txt (a rerun that built other tarballs) it goes too:
            // a bundle never stays beside a checksums.txt it did not sign.
            Some(_) if name == sign::CHECKSUMS_BUNDLE && checksums_kept(&plan) => Action::Keep,
            Some(_) if existing.is_some_and(|release| !release.draft) => bail!(
                "the published release has a different {name}: a published release is never changed; \
                 cut a new version"
            ),
            _ => Action::Upload,
        };
        plan.push((name.clone(), action));
    }
    if existing.is_some_and(|release| !release.draft)
        && plan.iter().any(|(_, action)| *action == Action::Upload)
    {
        bail!("the release is published already and lacks assets: upload them by hand after checking why");
    }
    Ok(plan)
}

fn checksums_kept(plan: &[(String, Action)]) -> bool {
    plan.iter().any(|(name, action)| name == checksums::CHECKSUMS && *action == Action::Keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Vec<(String, String)> {
        vec![
            ("a.tar.gz".to_owned(), "sha256:aa".to_owned()),
            ("checksums.txt".to_owned(), "sha256:cc".to_owned()),
        ]
    }

    #[test]
    fn a_half_done_draft_gets_only_what_it_lacks_or_has_wrong() {
        let draft = Release { draft: true, assets: vec![("a.tar.gz".to_owned(), "sha256:aa".to_owned())] };
        let plan = plan(&local(), Some(&draft)).unwrap();
        assert_eq!(
            plan,
            [("a.tar.gz".to_owned(), Action::Keep), ("checksums.txt".to_owned(), Action::Upload)]
        );

        let wrong = Release { draft: true, assets: vec![("a.tar.gz".to_owned(), "sha256:00".to_owned())] };
        assert_eq!(plan_actions(&local(), Some(&wrong)), [Action::Upload, Action::Upload]);
        assert_eq!(plan_actions(&local(), None), [Action::Upload, Action::Upload]);
    }

    #[test]
    fn a_published_release_is_never_changed() {
        let published =
            Release { draft: false, assets: vec![("a.tar.gz".to_owned(), "sha256:00".to_owned())] };
        let err = plan(&local(), Some(&published)).unwrap_err();
        assert!(err.to_string().contains("never changed"), "{err}");

        let complete = Release { draft: false, assets: local() };
        assert_eq!(plan_actions(&local(), Some(&complete)), [Action::Keep, Action::Keep]);
    }

    #[test]
    fn a_rerun_keeps_the_published_signature_of_the_same_checksums() {
        let mut local = local();
        local.push((sign::CHECKSUMS_BUNDLE.to_owned(), "sha256:new-signature".to_owned()));
        let mut assets = local.clone();
        assets.last_mut().unwrap().1 = "sha256:first-signature".to_owned();
        let published = Release { draft: false, assets };
        assert!(plan_actions(&local, Some(&published)).iter().all(|action| *action == Action::Keep));
    }

    #[test]
    fn a_draft_with_other_checksums_gets_the_new_signature_too() {
        // Found by reading: a rerun that rebuilt other tarballs replaced checksums.txt on
        // the draft but kept the bundle that signed the old one.
        let mut local = local();
        local.push((sign::CHECKSUMS_BUNDLE.to_owned(), "sha256:new-signature".to_owned()));
        let draft = Release {
            draft: true,
            assets: vec![
                ("a.tar.gz".to_owned(), "sha256:old".to_owned()),
                ("checksums.txt".to_owned(), "sha256:old-sums".to_owned()),
                (sign::CHECKSUMS_BUNDLE.to_owned(), "sha256:old-signature".to_owned()),
            ],
        };
        assert_eq!(plan_actions(&local, Some(&draft)), [Action::Upload, Action::Upload, Action::Upload]);
    }

    fn plan_actions(local: &[(String, String)], existing: Option<&Release>) -> Vec<Action> {
        plan(local, existing).unwrap().into_iter().map(|(_, action)| action).collect()
    }
}
