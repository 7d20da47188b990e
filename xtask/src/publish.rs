//! `cargo xtask image --push` and `--merge`: publishes the agent-runner for several
//! platforms from a `PublishPlan` (what `--dry-run` prints), in three layers: a builder
//! makes the index under `vX.Y.Z` (`buildx.rs` in one multi-platform build, or
//! `engine_push.rs` per platform with the index assembled by `index.rs`), then the
//! ending every publish shares: verify the index, and only then copy its exact bytes
//! to the floating tags the release plan lets move.
//!
//! Scaled out, each platform builds on its own (native) runner and is pushed by digest
//! with no tag (`PublishMode::ByDigest`); `PublishMode::Merge` then assembles the index
//! from those digests with the same code the engine builder uses, and shares the same
//! ending. Built from the same commit, both layouts give the same index bytes.
//!
//! Architecture invariant: a published version tag never changes. A version that is
//! published already is verified and reused, never rebuilt (`reuse_published`), and
//! `index::push_index` refuses another digest for it.
//!
//! Architecture invariant: a floating pointer (`latest`, `vX.Y`, `vX`) is only written
//! with the bytes of an index that `verify::verify` has just passed, never for a
//! pre-release, and never backwards: `move_pointers` reads the version the pointer
//! names at that moment and leaves it when that is newer.

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context};
use oci_client::secrets::RegistryAuth;
use xshell::Shell;

use crate::{
    buildx,
    engine::Engine,
    engine_push, index,
    oci::{self, Registry, Repository},
    plan::ReleasePlan,
    platform::Platform,
    prepare::DependencyPath,
    verify,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builder {
    Buildx,
    Engine,
}

/// What a publish produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PublishMode {
    /// Build every platform and publish the index under the version tag, then aliases.
    Index,
    /// Build one platform and push it by digest with no tag, for a later `Merge`.
    ByDigest,
    /// Build nothing: assemble the index from platform images already pushed by
    /// digest, then publish it like `Index` does.
    Merge(Vec<String>),
}

/// What a publish makes of a `PublishPlan`. Kept apart from it so that callers that
/// publish a whole index the default way (bench.rs) need not name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Steps {
    pub(crate) mode: PublishMode,
    /// Where the engine builder runs the Dockerfile's `prepare` stage.
    pub(crate) dependency_path: DependencyPath,
}

impl Default for Steps {
    fn default() -> Steps {
        Steps { mode: PublishMode::Index, dependency_path: DependencyPath::BuildPlatform }
    }
}

pub(crate) struct PublishPlan {
    /// The version, its tag, and which floating pointers may move.
    pub(crate) release: ReleasePlan,
    pub(crate) repository: Repository,
    /// What this run builds: every platform, or one with `--by-digest`.
    pub(crate) platforms: Vec<Platform>,
    pub(crate) builder: Builder,
    pub(crate) base_image: String,
    pub(crate) build_args: Vec<(&'static str, String)>,
    pub(crate) context: PathBuf,
    pub(crate) credentials_source: String,
    /// Credentials that are not in the Docker config, for buildx (see `buildx.rs`).
    pub(crate) explicit_auth: Option<RegistryAuth>,
    /// buildx's SBOM generator image [default: BuildKit's own].
    pub(crate) sbom_generator: Option<String>,
    pub(crate) cache_from: Vec<String>,
    pub(crate) cache_to: Vec<String>,
}

impl PublishPlan {
    pub(crate) fn version_tag(&self) -> String {
        self.release.tag.clone()
    }

    pub(crate) fn describe(&self, steps: &Steps) -> String {
        let kind =
            if self.release.version.pre.is_empty() { "release" } else { "pre-release: no pointer moves" };
        let builder = match self.builder {
            Builder::Buildx => "buildx (one multi-platform build, attestations on)",
            Builder::Engine => "engine (per-platform builds, index assembled with the OCI client)",
        };
        let dependencies = match steps.dependency_path {
            DependencyPath::BuildPlatform => "wheels for each platform, chosen on the build platform",
            DependencyPath::Emulated => "installed inside each platform's base image (emulated)",
        };
        let platforms: Vec<String> = self.platforms.iter().map(Platform::to_string).collect();
        let tagged = format!("{}:{}", self.repository, self.version_tag());
        let mut out = String::from("plan: publish the agent-runner image\n");
        out += &format!("  repository   {}\n", self.repository);
        out += &format!("  version      {} ({kind})\n", self.version_tag());
        out += &format!("  platforms    {}\n", platforms.join(", "));
        if !matches!(steps.mode, PublishMode::Merge(_)) {
            out += &format!("  builder      {builder}\n");
            out += &format!("  dependencies {dependencies}\n");
            out += &format!("  base image   {}\n", self.base_image);
        }
        out += &format!("  credentials  {}\n", self.credentials_source);
        out += "steps:\n";
        if let Some(digest) = &self.release.image.published {
            out += &format!(
                "  1. {tagged} is published already as {digest}: verify it and reuse it, build nothing\n"
            );
            if steps.mode == PublishMode::ByDigest {
                out += &format!(
                    "  2. print its {} entry's digest, for `cargo xtask image --merge`\n",
                    platforms.join(" and ")
                );
                return out;
            }
        } else {
            match &steps.mode {
                PublishMode::ByDigest => {
                    out += &format!(
                        "  1. build {} and push it to {} by digest, with no tag\n",
                        platforms.join(" and "),
                        self.repository
                    );
                    out += "  2. print the digest, for `cargo xtask image --merge`\n";
                    return out;
                }
                PublishMode::Index => {
                    out += &format!("  1. build {} and push it as {tagged}\n", platforms.join(" and "));
                }
                PublishMode::Merge(digests) => {
                    out += &format!(
                        "  1. assemble the index of {} and push it as {tagged}\n",
                        digests.join(", ")
                    );
                }
            }
        }
        out += &format!("  2. verify {tagged} with the OCI client\n");
        if self.release.image.pointers.is_empty() {
            out += "  3. move no floating tag\n";
        }
        for pointer in &self.release.image.pointers {
            let verb = if pointer.decision.moves { "point" } else { "leave" };
            out += &format!("  3. {verb} {} ({})\n", pointer.tag, pointer.decision.reason);
        }
        out
    }
}

/// Runs the plan: builder (or merge), then verification, then aliases; or, by digest,
/// only the build and the push of one platform.
pub(crate) async fn publish(sh: &Shell, plan: &PublishPlan, registry: &Registry) -> anyhow::Result<()> {
    publish_steps(sh, plan, &Steps::default(), registry).await
}

/// `publish` for any `Steps`.
pub(crate) async fn publish_steps(
    sh: &Shell,
    plan: &PublishPlan,
    steps: &Steps,
    registry: &Registry,
) -> anyhow::Result<()> {
    let started = Instant::now();
    registry.check_push_access().await?;
    let index_digest = match reuse_published(plan, steps, registry).await? {
        Reuse::Printed => return Ok(()),
        Reuse::Index(digest) => digest,
        Reuse::Nothing => match (&steps.mode, plan.builder) {
            (PublishMode::ByDigest, builder) => {
                let digest = match builder {
                    Builder::Engine => {
                        let engine = Engine::connect(sh)?;
                        let [platform] = plan.platforms[..] else {
                            bail!("--by-digest pushes one platform; give --platform once");
                        };
                        engine_push::push_platform(sh, &engine, plan, steps, registry, platform).await?
                            ["digest"]
                            .as_str()
                            .context("a descriptor has a digest")?
                            .to_owned()
                    }
                    Builder::Buildx => buildx::build(sh, plan, &steps.mode)?,
                };
                eprintln!("\n==> pushed {}@{digest} (no tag)", plan.repository);
                eprintln!("  blob bytes uploaded {}", registry.uploaded_bytes());
                eprintln!("  time               {:.1} s", started.elapsed().as_secs_f64());
                eprintln!("  next: cargo xtask image --merge {digest},<the other platforms' digests>");
                // The one line on stdout, for scripts: `digest=$(cargo xtask image ... --by-digest)`.
                println!("{digest}");
                return Ok(());
            }
            (PublishMode::Merge(digests), _) => {
                let entries = index::merge_entries(plan, registry, digests).await?;
                index::push_index(plan, registry, &index::assemble(plan, entries)?).await?
            }
            (PublishMode::Index, Builder::Engine) => {
                let engine = Engine::connect(sh)?;
                let mut entries = Vec::new();
                for &platform in &plan.platforms {
                    entries.push(
                        engine_push::push_platform(sh, &engine, plan, steps, registry, platform).await?,
                    );
                }
                index::push_index(plan, registry, &index::assemble(plan, entries)?).await?
            }
            (PublishMode::Index, Builder::Buildx) => buildx::build(sh, plan, &steps.mode)?,
        },
    };
    let moved = verify_then_move(plan, registry, &index_digest).await?;
    eprintln!("\n==> published {}@{index_digest}", plan.repository);
    let mut tags = vec![plan.version_tag()];
    tags.extend(moved);
    eprintln!("  tags               {}", tags.join(", "));
    eprintln!("  blob bytes uploaded {}", registry.uploaded_bytes());
    eprintln!("  registry requests  {}", registry.requests());
    eprintln!("  time               {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

enum Reuse {
    /// The version is not published yet: build it.
    Nothing,
    /// It is: finish the ending (verify, move pointers) with this index.
    Index(String),
    /// It is, and this was a `--by-digest` run: the platform's entry was printed.
    Printed,
}

/// A version published already is reused: a rerun of any job finishes what is missing
/// and rebuilds nothing (buildx would make new digests: its configs and provenance carry
/// build times). The shared ending verifies it before any pointer moves. A merge whose
/// digests are not in the published index is refused: the version would change.
async fn reuse_published(plan: &PublishPlan, steps: &Steps, registry: &Registry) -> anyhow::Result<Reuse> {
    let tag = plan.version_tag();
    let Some((bytes, digest)) = registry.manifest(&tag).await? else { return Ok(Reuse::Nothing) };
    eprintln!("==> {}:{tag} is published already as {digest}: nothing is rebuilt", plan.repository);
    match &steps.mode {
        PublishMode::ByDigest => {
            // No ending follows to verify it: entries of a broken index are not handed on.
            verify::verify(registry, &tag, &plan.release.platforms()?, &[]).await.with_context(|| {
                format!("{}:{tag} is published but fails verification; a published version is never replaced: find out why, or cut the next patch", plan.repository)
            })?;
            let index: serde_json::Value = serde_json::from_slice(&bytes)?;
            for platform in &plan.platforms {
                let entry = index["manifests"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|d| !oci::is_attestation(d) && index::platform_of(d) == platform.to_string())
                    .and_then(|d| d["digest"].as_str())
                    .with_context(|| format!("{}:{tag} has no {platform} image", plan.repository))?;
                eprintln!("==> {platform} of {tag} is {entry}");
                println!("{entry}");
            }
            Ok(Reuse::Printed)
        }
        PublishMode::Merge(digests) if !index::holds_all(registry, &bytes, digests).await? => {
            let entries = index::merge_entries(plan, registry, digests).await?;
            let merged = oci::sha256_digest(&index::assemble(plan, entries)?);
            bail!(index::write_once_refusal(plan, &digest, &merged))
        }
        PublishMode::Merge(_) | PublishMode::Index => Ok(Reuse::Index(digest)),
    }
}

/// The ending every publish shares: verify the index under the version tag, and only
/// then copy its exact bytes to the floating tags that may move. Returns those tags.
async fn verify_then_move(
    plan: &PublishPlan,
    registry: &Registry,
    index_digest: &str,
) -> anyhow::Result<Vec<String>> {
    let tag = plan.version_tag();
    let tagged = format!("{}:{tag}", plan.repository);
    eprintln!("==> verifying {tagged}");
    let report = verify::verify(registry, &tag, &plan.release.platforms()?, &[]).await.with_context(|| {
        format!("{tagged} failed verification; no pointer was moved. Fix the cause and run the same command again (a published version is never replaced: if it is broken, cut the next patch)")
    })?;
    if report.index_digest != index_digest {
        bail!("{tagged} resolves to {}, not to the index just pushed ({index_digest}): another publish raced this one; no pointer was moved", report.index_digest);
    }
    let image = oci::ImageRef { repository: plan.repository.clone(), target: tag };
    eprint!("{}", report.table(&image));
    move_pointers(plan, registry, index_digest).await
}

/// Copies the verified index's exact bytes (never a re-serialized or rebuilt index) to
/// each floating tag the plan lets move, unless that tag names a newer version now.
async fn move_pointers(
    plan: &PublishPlan,
    registry: &Registry,
    index_digest: &str,
) -> anyhow::Result<Vec<String>> {
    let (index_bytes, _) = registry.manifest(index_digest).await?.context("the verified index vanished")?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&index_bytes)?["mediaType"]
        .as_str()
        .unwrap_or(oci::OCI_INDEX)
        .to_owned();
    let version = &plan.release.version;
    let mut moved = Vec::new();
    for pointer in &plan.release.image.pointers {
        let tag = &pointer.tag;
        if !pointer.decision.moves {
            eprintln!("  {tag:<8} stays ({})", pointer.decision.reason);
            continue;
        }
        match registry.manifest(tag).await? {
            Some((_, at)) if at == index_digest => {
                eprintln!("  {tag:<8} names {} already", plan.version_tag());
                moved.push(tag.clone());
                continue;
            }
            Some((bytes, _)) => match oci::version_of(registry, &bytes).await? {
                Some(newer) if newer > *version => {
                    eprintln!("  {tag:<8} stays: it names v{newer} now, newer than this release");
                    continue;
                }
                _ => {}
            },
            None => {}
        }
        registry
            .push_manifest(tag, &index_bytes, &media_type)
            .await
            .with_context(|| format!("pointing {tag} at {index_digest}"))?;
        eprintln!("  {tag:<8} -> {}", plan.version_tag());
        moved.push(tag.clone());
    }
    let misplaced = verify::tags_elsewhere(registry, &moved, index_digest).await?;
    if !misplaced.is_empty() {
        bail!("after moving the pointers: {}", misplaced.join("; "));
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::{self, Kind, World};

    fn version(text: &str) -> semver::Version {
        semver::Version::parse(text).unwrap()
    }

    fn plan() -> PublishPlan {
        let repository: Repository = "ghcr.io/stigmer/agent-runner".parse().unwrap();
        PublishPlan {
            release: plan::compute(&version("1.3.0"), Kind::Release, false, &repository, &World::default()),
            repository,
            platforms: Platform::ALL.to_vec(),
            builder: Builder::Buildx,
            base_image: "python:3.11-slim".into(),
            build_args: vec![("BASE_IMAGE", "python:3.11-slim".into()), ("VERSION", "1.3.0".into())],
            context: "agent-runner".into(),
            credentials_source: "GITHUB_TOKEN".into(),
            explicit_auth: None,
            sbom_generator: None,
            cache_from: vec!["type=gha".into()],
            cache_to: vec!["type=gha,mode=max".into()],
        }
    }

    #[test]
    fn the_buildx_command_pushes_one_multi_platform_build_with_attestations() {
        let args = buildx::args(&plan(), &PublishMode::Index, Path::new("/tmp/meta.json"));
        insta::assert_snapshot!(args.join(" "), @"buildx build --platform linux/amd64,linux/arm64 --push --tag ghcr.io/stigmer/agent-runner:v1.3.0 --metadata-file /tmp/meta.json --provenance=mode=max --sbom=true --build-arg BASE_IMAGE=python:3.11-slim --build-arg VERSION=1.3.0 --cache-from type=gha --cache-to type=gha,mode=max agent-runner");
    }

    #[test]
    fn a_given_sbom_generator_replaces_buildkits_default_scanner() {
        let plan = PublishPlan { sbom_generator: Some("127.0.0.1:5000/sbom-scanner:test".into()), ..plan() };
        let args = buildx::args(&plan, &PublishMode::Index, Path::new("/tmp/meta.json")).join(" ");
        assert!(args.contains(" --attest type=sbom,generator=127.0.0.1:5000/sbom-scanner:test "), "{args}");
        assert!(!args.contains("--sbom=true"), "{args}");
    }

    #[test]
    fn the_dry_run_plan_names_every_tag_in_order() {
        insta::assert_snapshot!(plan().describe(&Steps::default()));
    }

    #[test]
    fn a_by_digest_buildx_build_pushes_without_a_tag() {
        let plan = PublishPlan { platforms: vec![Platform::LinuxArm64], ..plan() };
        let args = buildx::args(&plan, &PublishMode::ByDigest, Path::new("/tmp/meta.json"));
        insta::assert_snapshot!(args.join(" "), @"buildx build --platform linux/arm64 --output type=image,name=ghcr.io/stigmer/agent-runner,push-by-digest=true,name-canonical=true,push=true --metadata-file /tmp/meta.json --provenance=mode=max --sbom=true --build-arg BASE_IMAGE=python:3.11-slim --build-arg VERSION=1.3.0 --cache-from type=gha --cache-to type=gha,mode=max agent-runner");
    }

    #[test]
    fn the_plans_of_a_by_digest_push_and_a_merge_say_what_they_tag() {
        let by_digest = Steps { mode: PublishMode::ByDigest, dependency_path: DependencyPath::BuildPlatform };
        let merge = Steps {
            mode: PublishMode::Merge(vec!["sha256:aa".into(), "sha256:bb".into()]),
            dependency_path: DependencyPath::BuildPlatform,
        };
        let one_platform = PublishPlan { platforms: vec![Platform::LinuxArm64], ..plan() };
        insta::assert_snapshot!(format!(
            "{}\n{}",
            one_platform.describe(&by_digest),
            plan().describe(&merge)
        ));
    }
}
