//! The release plan: everything a release will publish and move, computed once from
//! the version and the state of the world (the releases published: the registry's
//! version tags and, in release.yml, GitHub's releases; and what the registry's version
//! tag and floating tags name now). `cargo xtask plan` prints it or writes it as JSON;
//! in the release workflow the first job writes plan.json and every later job reads it
//! (`--plan`), so no job derives versions or tags from its own flags.
//!
//! The plan says which floating pointers may move. The commands that move them decide
//! again at the moment of moving (`Pointer::decide` over what the pointer names then),
//! so a plan that went stale can never move a pointer backwards.

use std::path::Path;

use anyhow::{bail, Context};
use semver::Version;
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::{
    flags, github,
    platform::Platform,
    platform::Target,
    pointer::{Current, Decision, Pointer},
    project,
    registry::oci::{self, Registry, Repository},
    version,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    Release,
    PreRelease,
    /// A dry run's version: `X.Y.(Z+1)-snapshot-<sha>`, never published.
    Snapshot,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReleasePlan {
    pub(crate) version: Version,
    /// `vX.Y.Z`: the git tag, the image's version tag and the GitHub release.
    pub(crate) tag: String,
    pub(crate) kind: Kind,
    /// Every command given this plan prints what it would do and publishes nothing.
    pub(crate) dry_run: bool,
    pub(crate) image: ImagePlan,
    pub(crate) cli: Vec<Artifact>,
    /// Whether the Homebrew formula moves to this version.
    pub(crate) homebrew: Decision,
    /// Whether GitHub marks this release as its Latest, as far as the plan can tell:
    /// `github-release` decides again over the releases GitHub lists when it publishes
    /// (`latest_now`), which may be fewer than the registry's.
    pub(crate) github_latest: Decision,
    /// The final releases published when the plan was made (the registry's version
    /// tags, and GitHub's releases in release.yml). Every mover adds what it reads at
    /// the moment it moves.
    pub(crate) released: Vec<Version>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImagePlan {
    /// `ghcr.io/stigmer/agent-runner`.
    pub(crate) repository: String,
    pub(crate) platforms: Vec<String>,
    /// The base image every platform is built from, as agent-runner/Dockerfile pins it
    /// (`python:3.11-slim@sha256:...`): the image jobs build from it, the SBOM lists its
    /// packages. `None` when the checkout has no agent-runner Dockerfile.
    #[serde(default)]
    pub(crate) base_image: Option<String>,
    /// The digest `vX.Y.Z` names already: a rerun reuses that index and builds nothing.
    pub(crate) published: Option<String>,
    /// The floating tags of this version's lines, each with whether it moves here.
    pub(crate) pointers: Vec<PointerPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PointerPlan {
    pub(crate) tag: String,
    #[serde(flatten)]
    pub(crate) decision: Decision,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Artifact {
    pub(crate) target: String,
    pub(crate) archive: String,
}

/// What the plan is computed from.
#[derive(Default)]
pub(crate) struct World {
    /// Every final release that is published: a version tag in the registry, or a
    /// published GitHub release. Never git's tags alone: a tag whose run was cancelled
    /// published nothing, and must not hold the pointers back.
    pub(crate) released: Vec<Version>,
    /// What `vX.Y.Z` names in the registry now.
    pub(crate) published: Option<String>,
    /// Each floating tag that exists, with what it names (`registry_state`).
    pub(crate) pointers: Vec<(String, Current)>,
}

impl World {
    /// What the floating tag `name` names now.
    pub(crate) fn pointer(&self, name: &str) -> Current {
        self.pointers.iter().find(|(tag, _)| tag == name).map_or(Current::Absent, |(_, at)| at.clone())
    }
}

impl ReleasePlan {
    pub(crate) fn repository(&self) -> anyhow::Result<Repository> {
        self.image.repository.parse()
    }

    pub(crate) fn platforms(&self) -> anyhow::Result<Vec<Platform>> {
        self.image.platforms.iter().map(|p| p.parse()).collect()
    }

    /// The verified image digest a job of this plan was given (`--image-digest`; empty
    /// means none, which is what a dry run's workflow passes), refused when missing from
    /// a release that publishes: its CLI and notes must name what was verified.
    pub(crate) fn image_digest(&self, given: Option<String>) -> anyhow::Result<Option<String>> {
        let given = given.filter(|digest| !digest.is_empty());
        if given.is_none() && !self.dry_run {
            bail!(
                "release {} pins the agent-runner index that was verified: pass --image-digest \
                 sha256:... (the `image` job's output)",
                self.tag
            );
        }
        Ok(given)
    }

    pub(crate) fn read(path: &Path) -> anyhow::Result<ReleasePlan> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("reading the release plan {}: run `cargo xtask plan --out` first", path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a release plan", path.display()))
    }

    pub(crate) fn to_json(&self) -> String {
        format!("{}\n", serde_json::to_string_pretty(self).expect("a plan serializes"))
    }

    /// The plan as a maintainer reads it.
    pub(crate) fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::Release => "release",
            Kind::PreRelease => "pre-release",
            Kind::Snapshot => "snapshot (a dry run's version; never published)",
        };
        let mut out =
            format!("release plan: {} ({kind}){}\n", self.tag, if self.dry_run { ", dry run" } else { "" });
        out += &format!(
            "  image      {}:{} for {}\n",
            self.image.repository,
            self.tag,
            self.image.platforms.join(", ")
        );
        match &self.image.base_image {
            Some(base) => out += &format!("             built from {base}\n"),
            None => out += "             no base image pinned (no agent-runner/Dockerfile)\n",
        }
        match &self.image.published {
            Some(digest) => {
                out += &format!("             published already as {digest}: reused, not rebuilt\n")
            }
            None => out += "             not published yet: built, pushed, verified\n",
        }
        if self.image.pointers.is_empty() {
            out += "  pointers   none move (a pre-release or snapshot moves no floating tag)\n";
        }
        for pointer in &self.image.pointers {
            let verb = if pointer.decision.moves { "moves" } else { "stays" };
            out += &format!("  {:<10} {verb}: {}\n", pointer.tag, pointer.decision.reason);
        }
        for artifact in &self.cli {
            out += &format!("  cli        {} ({})\n", artifact.archive, artifact.target);
        }
        let decision = |d: &Decision| format!("{}: {}", if d.moves { "moves" } else { "stays" }, d.reason);
        out += &format!("  homebrew   {}\n", decision(&self.homebrew));
        out += &format!("  GitHub     Latest {}\n", decision(&self.github_latest));
        out
    }
}

/// The plan for `version`, from the state of the world. Pure, so every case is a
/// snapshot test. Every decision is `Pointer::decide`'s.
pub(crate) fn compute(
    version: &Version,
    kind: Kind,
    dry_run: bool,
    repository: &Repository,
    base_image: Option<&str>,
    world: &World,
) -> ReleasePlan {
    let tag = version::tag(version);
    let pointers = Pointer::of(version)
        .into_iter()
        .map(|pointer| {
            let name = pointer.tag();
            let current = world.pointer(&name);
            PointerPlan { decision: pointer.decide(version, &world.released, &current), tag: name }
        })
        .collect();
    let newest_final = |what: &str| -> Decision {
        match kind {
            Kind::PreRelease => {
                Decision { moves: false, reason: format!("a pre-release never moves {what}") }
            }
            Kind::Snapshot => Decision { moves: false, reason: "a snapshot is never published".to_owned() },
            Kind::Release => match Pointer::Latest.decide(version, &world.released, &Current::Absent) {
                Decision { moves: true, .. } => {
                    Decision { moves: true, reason: format!("{tag} is the newest release") }
                }
                stays => stays,
            },
        }
    };
    let homebrew = newest_final("the formula");
    let github_latest = newest_final("GitHub's Latest");
    ReleasePlan {
        version: version.clone(),
        tag,
        kind,
        dry_run,
        image: ImagePlan {
            repository: repository.to_string(),
            platforms: Platform::ALL.iter().map(Platform::to_string).collect(),
            base_image: base_image.map(str::to_owned),
            published: world.published.clone(),
            pointers,
        },
        cli: Target::ALL
            .into_iter()
            .map(|target| Artifact {
                target: target.triple().to_owned(),
                archive: target.archive_name(version),
            })
            .collect(),
        homebrew,
        github_latest,
        released: {
            let mut released = world.released.clone();
            released.sort();
            released.dedup();
            released
        },
    }
}

/// A final release of ours that the registry has published: its version tag's version,
/// and the index that tag names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) version: Version,
    pub(crate) digest: String,
}

/// The final releases of ours that the registry has published: the rule of what counts
/// as released, for the plan, every mover and `verify-release`. A version tag counts only
/// when this repository has the git tag of that version and the index was built from
/// the commit that git tag names: anyone who can push to the package can push
/// `v9.0.0`, and only who can push to the repository can make its tag. A registry or git
/// that cannot be read is an error, never an empty world.
pub(crate) async fn released_images(sh: &Shell, registry: &Registry) -> anyhow::Result<Vec<Published>> {
    let tags = registry.tags().await.context("listing the registry's version tags")?;
    let versions: Vec<Version> =
        tags.iter().filter_map(|tag| version::parse(tag).ok()).filter(|v| v.pre.is_empty()).collect();
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let git_tags = release_tags(sh)?;
    let mut released = Vec::new();
    for version in versions {
        let tag = version::tag(&version);
        // Git first: a version git never tagged costs no registry read.
        let Some(commit) = git_tags.get(&version) else {
            eprintln!("  {tag} in the registry is no release of ours: git has no tag {tag}");
            continue;
        };
        let Some((bytes, digest)) = registry.manifest(&tag).await? else { continue };
        match oci::revision_of(registry, &bytes).await? {
            Some(revision) if *commit == revision => released.push(Published { version, digest }),
            revision => eprintln!(
                "  {tag} in the registry is no release of ours: built from {}, and git's {tag} is {commit}",
                revision.as_deref().unwrap_or("no named commit")
            ),
        }
    }
    Ok(released)
}

/// What a floating tag naming `digest` names, as the forward-only rule reads it: the
/// release of ours whose version tag names that index, else something that is no
/// release of ours (a third party's index, or a build with no version), not ours to keep.
pub(crate) fn naming(released: &[Published], digest: &str) -> Current {
    match released.iter().find(|release| release.digest == digest) {
        Some(release) => Current::Version(release.version.clone()),
        None => Current::NotOurs,
    }
}

/// The version tags of this repository and the commit each names: `origin`'s when the
/// checkout has one (a CI checkout holds only its own tag, a maintainer's may be
/// behind), else the checkout's own.
fn release_tags(sh: &Shell) -> anyhow::Result<std::collections::BTreeMap<Version, String>> {
    let has_origin =
        cmd!(sh, "git remote get-url origin").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    let remote = if has_origin { "origin" } else { "." };
    let listing = cmd!(sh, "git ls-remote --tags {remote}").quiet().read().with_context(|| {
        format!(
            "listing the release tags (`git ls-remote --tags {remote}` in {}): the registry's \
             version tags count as released only where git tags them",
            sh.current_dir().display()
        )
    })?;
    let mut tags = std::collections::BTreeMap::new();
    // An annotated tag is listed twice: the tag object, then `^{}`, the commit it names.
    for line in listing.lines() {
        let Some((object, name)) = line.split_once('\t') else { continue };
        let name = name.strip_prefix("refs/tags/").unwrap_or(name);
        let (name, peeled) = match name.strip_suffix("^{}") {
            Some(name) => (name, true),
            None => (name, false),
        };
        let Ok(version) = version::parse(name) else { continue };
        if peeled || !tags.contains_key(&version) {
            tags.insert(version, object.to_owned());
        }
    }
    Ok(tags)
}

/// What the registry's version tag and floating tags name now.
pub(crate) async fn registry_state(
    sh: &Shell,
    registry: &Registry,
    version: &Version,
) -> anyhow::Result<World> {
    let published = registry.manifest(&version::tag(version)).await?.map(|(_, digest)| digest);
    let released = released_images(sh, registry).await?;
    let mut pointers = Vec::new();
    for pointer in Pointer::lines_of(version) {
        let tag = pointer.tag();
        if let Some((_, digest)) = registry.manifest(&tag).await? {
            let current = match &published {
                Some(own) if *own == digest => Current::Version(version.clone()),
                _ => naming(&released, &digest),
            };
            pointers.push((tag, current));
        }
    }
    let released = released.into_iter().map(|release| release.version).collect();
    Ok(World { released, published, pointers })
}

/// The plan for `version` (a release or pre-release), from what is published: the
/// registry, and GitHub's releases when `github` (release.yml's plan job).
pub(crate) async fn for_version(
    sh: &Shell,
    version: &Version,
    dry_run: bool,
    registry: &Registry,
    github: bool,
) -> anyhow::Result<ReleasePlan> {
    let kind = if version.pre.is_empty() { Kind::Release } else { Kind::PreRelease };
    let mut world = registry_state(sh, registry, version).await?;
    if github {
        world.released.extend(github::published_releases(sh)?);
    }
    let base = project::pinned_base(sh)?.map(|base| base.reference);
    Ok(compute(version, kind, dry_run, registry.repository(), base.as_deref(), &world))
}

/// The plan a command works from: `--plan FILE` (release.yml's, made once by its first
/// job), else computed now for `--version` from the registry.
pub(crate) fn load(
    sh: &Shell,
    plan: Option<&Path>,
    version: Option<&str>,
    registry: &str,
    dry_run: bool,
) -> anyhow::Result<ReleasePlan> {
    match (plan, version) {
        (Some(path), _) => ReleasePlan::read(&sh.current_dir().join(path)),
        (None, Some(text)) => {
            let version = version::parse(text)?;
            if version::is_snapshot(&version) {
                let repository = image_repository(registry)?;
                let base = project::pinned_base(sh)?.map(|base| base.reference);
                return Ok(compute(
                    &version,
                    Kind::Snapshot,
                    true,
                    &repository,
                    base.as_deref(),
                    &World::default(),
                ));
            }
            let repository = image_repository(registry)?;
            let registry = oci::connect(sh, &repository, None)?;
            oci::block_on(for_version(sh, &version, dry_run, &registry, false))
        }
        (None, None) => bail!("give --version or --plan"),
    }
}

/// The agent-runner's repository in `registry` (`ghcr.io/stigmer`).
pub(crate) fn image_repository(registry: &str) -> anyhow::Result<Repository> {
    format!("{}/agent-runner", registry.trim_end_matches('/')).parse()
}

/// A dry run's plan: this commit's snapshot version, which nothing has published.
pub(crate) fn for_snapshot(sh: &Shell, repository: &Repository) -> anyhow::Result<ReleasePlan> {
    let version = snapshot_version(sh)?;
    let base = project::pinned_base(sh)?.map(|base| base.reference);
    Ok(compute(&version, Kind::Snapshot, true, repository, base.as_deref(), &World::default()))
}

/// This checkout's snapshot version, `.dirty` when the work tree has changes: a
/// snapshot never claims to be a commit it is not.
pub(crate) fn snapshot_version(sh: &Shell) -> anyhow::Result<Version> {
    let workspace = project::workspace_version(sh)?;
    let sha = cmd!(sh, "git rev-parse --short=7 HEAD").quiet().ignore_stderr().read().unwrap_or_default();
    let sha = if sha.trim().is_empty() { "nogit".to_owned() } else { sha.trim().to_owned() };
    let dirty = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    Ok(version::snapshot(&workspace, &sha, !dirty.trim().is_empty()))
}

/// What a plan is made for: a version (published, or a dry run of it), or this
/// commit's snapshot.
pub(crate) enum Subject {
    Release { version: Version, dry_run: bool },
    Snapshot,
}

/// What a GitHub Actions run of release.yml releases: a `v*` tag push releases that
/// tag, which must be the workspace version; `workflow_dispatch` with its dry-run
/// input on is a dry run (of the tag when run on one, else of this commit's snapshot).
pub(crate) fn github_event(sh: &Shell) -> anyhow::Result<Subject> {
    let var = |name: &str| sh.var(name).unwrap_or_default();
    let dry_run = var("GITHUB_EVENT_NAME") == "workflow_dispatch" && var("DRY_RUN_INPUT") == "true";
    if var("GITHUB_REF_TYPE") == "tag" {
        let tag = var("GITHUB_REF_NAME");
        let version = version::parse(&tag)?;
        let workspace = project::workspace_version(sh)?;
        if version != workspace {
            bail!("tag {tag} is not the workspace version v{workspace}: push the tag that `cargo xtask release` made");
        }
        return Ok(Subject::Release { version, dry_run });
    }
    if dry_run {
        return Ok(Subject::Snapshot);
    }
    bail!("a release runs from a tag: run this workflow on a tag, or turn dry-run on")
}

impl flags::Plan {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let repository = image_repository(&self.registry)?;
        let event = match (self.github, &self.version, self.dry_run) {
            (true, _, _) => github_event(sh)?,
            (false, None, true) => Subject::Snapshot,
            (false, Some(text), dry_run) => Subject::Release { version: version::parse(text)?, dry_run },
            (false, None, false) => {
                Subject::Release { version: project::workspace_version(sh)?, dry_run: false }
            }
        };
        let plan = match event {
            Subject::Snapshot => for_snapshot(sh, &repository)?,
            Subject::Release { version, dry_run } => {
                let registry = crate::registry::oci::connect(sh, &repository, None)?;
                crate::registry::oci::block_on(for_version(sh, &version, dry_run, &registry, self.github))?
            }
        };
        if let Some(out) = &self.out {
            let out = sh.current_dir().join(out);
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            crate::files::write_atomically(&out, plan.to_json().as_bytes())?;
            eprintln!("wrote {}", out.display());
        }
        if self.json {
            print!("{}", plan.to_json());
        } else {
            eprint!("{}", plan.describe());
        }
        if self.github {
            write_github_outputs(sh, &plan)?;
        }
        Ok(())
    }
}

/// The plan's few facts that workflow `if:` conditions need, as step outputs, and the
/// plan itself in the run's summary.
fn write_github_outputs(sh: &Shell, plan: &ReleasePlan) -> anyhow::Result<()> {
    if let Ok(summary) = sh.var("GITHUB_STEP_SUMMARY") {
        append(&summary, &format!("```\n{}```\n", plan.describe()))?;
    }
    let Ok(path) = sh.var("GITHUB_OUTPUT") else { return Ok(()) };
    let outputs = format!(
        "version={}\nprerelease={}\ndry-run={}\nhomebrew={}\n",
        plan.tag,
        plan.kind != Kind::Release,
        plan.dry_run,
        plan.homebrew.moves
    );
    append(&path, &outputs)
}

fn append(path: &str, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .with_context(|| format!("appending to {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    fn plan(version: &str, released: &[&str], published: Option<&str>, pointers: &[(&str, &str)]) -> String {
        let version = v(version);
        let kind = if version.pre.is_empty() { Kind::Release } else { Kind::PreRelease };
        let world = World {
            released: released.iter().map(|r| v(r)).collect(),
            published: published.map(str::to_owned),
            pointers: pointers.iter().map(|(tag, at)| (tag.to_string(), Current::Version(v(at)))).collect(),
        };
        let repository = "ghcr.io/stigmer/agent-runner".parse().unwrap();
        let base = "python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff";
        let plan = compute(&version, kind, false, &repository, Some(base), &world);
        format!("{}\n{}", plan.describe(), plan.to_json())
    }

    #[test]
    fn the_first_release_moves_every_pointer() {
        insta::assert_snapshot!(plan("0.1.0", &[], None, &[]));
    }

    #[test]
    fn a_minor_release_moves_every_pointer_forward() {
        let pointers = [("latest", "1.2.3"), ("v1", "1.2.3")];
        insta::assert_snapshot!(plan("1.3.0", &["1.2.3"], None, &pointers));
    }

    #[test]
    fn a_patch_on_the_newest_line_moves_every_pointer() {
        let pointers = [("latest", "1.3.0"), ("v1.3", "1.3.0"), ("v1", "1.3.0")];
        insta::assert_snapshot!(plan("1.3.1", &["1.2.3", "1.3.0"], None, &pointers));
    }

    #[test]
    fn a_backport_moves_only_its_own_line() {
        let pointers = [("latest", "1.3.0"), ("v1.2", "1.2.3"), ("v1", "1.3.0")];
        insta::assert_snapshot!(plan("1.2.4", &["1.2.3", "1.3.0"], None, &pointers));
    }

    #[test]
    fn a_pre_release_moves_nothing() {
        insta::assert_snapshot!(plan("1.4.0-rc.1", &["1.3.0"], None, &[("latest", "1.3.0")]));
    }

    #[test]
    fn a_rerun_of_a_published_version_reuses_its_index_and_moves_nothing_backwards() {
        // v1.3.0's jobs rerun after v1.3.1 went out: its index is reused, and every
        // pointer names v1.3.1 now, so none moves back.
        let pointers = [("latest", "1.3.1"), ("v1.3", "1.3.1"), ("v1", "1.3.1")];
        let published = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        insta::assert_snapshot!(plan("1.3.0", &["1.3.0", "1.3.1"], Some(published), &pointers));
    }

    #[test]
    fn a_pointer_ahead_of_git_is_believed() {
        // The registry says v1 names 1.9.0 although git has no such tag (cut from a
        // clone that was not fetched): the pointer stays.
        let out = plan("1.4.0", &["1.3.0"], None, &[("v1", "1.9.0")]);
        assert!(out.contains("v1         stays: v1.9.0 is newer on its line"), "{out}");
    }
}
