//! `cargo xtask image --push` and `--merge`: publishes the agent-runner for several
//! platforms from a `PublishPlan` (`publish_plan.rs`, what `--dry-run` prints), in
//! three layers: a builder
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

use std::time::Instant;

use anyhow::{bail, Context};
use xshell::Shell;

use crate::{
    attest, buildx,
    digest::sha256_digest,
    document::{self, is_attestation, platform_of, Document},
    engine::Engine,
    engine_push, index,
    oci::{self, Registry},
    plan,
    pointer::{Current, Pointer},
    publish_plan::{Builder, PublishMode, PublishPlan, Steps},
    sign, verify,
};

/// Runs the plan: builder (or merge), then verification, then aliases; or, by digest,
/// only the build and the push of one platform.
pub(crate) async fn publish_steps(
    sh: &Shell,
    plan: &PublishPlan,
    steps: &Steps,
    registry: &Registry,
) -> anyhow::Result<()> {
    let started = Instant::now();
    registry.check_push_access().await?;
    if let Some(signer) = &plan.signer {
        sign::check_signer(sh, signer)?;
    }
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
                        engine_push::push_platform(sh, &engine, plan, steps, registry, platform)
                            .await?
                            .digest()
                            .to_string()
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
                index::push_index(plan, registry, &index::assemble(plan, entries)).await?
            }
            (PublishMode::Index, Builder::Engine) => {
                let engine = Engine::connect(sh)?;
                let mut entries = Vec::new();
                for &platform in &plan.platforms {
                    entries.push(
                        engine_push::push_platform(sh, &engine, plan, steps, registry, platform).await?,
                    );
                }
                index::push_index(plan, registry, &index::assemble(plan, entries)).await?
            }
            (PublishMode::Index, Builder::Buildx) => buildx::build(sh, plan, &steps.mode)?,
        },
    };
    let moved = verify_then_move(sh, plan, registry, &index_digest).await?;
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
            let index = document::index(&bytes, &format!("{}:{tag}", plan.repository))?;
            for platform in &plan.platforms {
                let entry = index
                    .manifests()
                    .iter()
                    .find(|d| !is_attestation(d) && platform_of(d) == platform.to_string())
                    .map(|d| d.digest().to_string())
                    .with_context(|| format!("{}:{tag} has no {platform} image", plan.repository))?;
                eprintln!("==> {platform} of {tag} is {entry}");
                println!("{entry}");
            }
            Ok(Reuse::Printed)
        }
        PublishMode::Merge(digests) if !index::holds_all(registry, &bytes, digests).await? => {
            let entries = index::merge_entries(plan, registry, digests).await?;
            let merged = sha256_digest(&index::assemble(plan, entries));
            bail!(index::write_once_refusal(plan, &digest, &merged))
        }
        PublishMode::Merge(_) | PublishMode::Index => Ok(Reuse::Index(digest)),
    }
}

/// The ending every publish shares: verify the index under the version tag, sign it by
/// digest when the plan signs, and only then copy its exact bytes to the floating tags
/// that may move. Returns those tags.
async fn verify_then_move(
    sh: &Shell,
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
    if let Some(signer) = &plan.signer {
        let reference = format!("{}@{index_digest}", plan.repository);
        eprintln!("==> signing {reference} ({})", signer.describe());
        // cosign reads registry logins from a Docker config only: hand it explicit
        // credentials the way buildx gets them.
        let config = match &plan.explicit_auth {
            Some(auth) => Some(buildx::private_docker_config(sh, &plan.repository.registry, auth)?),
            None => None,
        };
        let config = config.as_ref().map(|dir| dir.path());
        // A rerun with the same key adds no second signature (nor attestations).
        let own = sign::own_verifier(sh, signer);
        let passes =
            |outcome: anyhow::Result<Result<(), String>>| outcome.is_ok_and(|outcome| outcome.is_ok());
        let done = |kind: Option<&str>| {
            own.as_ref().is_some_and(|(_, verifier)| match kind {
                None => passes(sign::verify_image(sh, verifier, &reference, config)),
                Some(kind) => passes(sign::verify_attestation(sh, verifier, &reference, kind, config)),
            })
        };
        if done(None) {
            eprintln!("  signed with this key already");
        } else {
            sign::sign_image(sh, signer, &reference, config)
                .context("no pointer was moved; fix the cause and run the same command again")?;
        }
        // BuildKit's attestations are entries of the index, covered by its signature;
        // an index without them (the engine builder's) gets both as cosign attestations.
        let attested = done(Some("spdxjson")) && done(Some("slsaprovenance1"));
        if report.attestations == 0 && !attested {
            attest::attach(sh, plan, signer, index_digest, config)
                .context("no pointer was moved; fix the cause and run the same command again")?;
        }
    }
    move_pointers(plan, registry, index_digest).await
}

/// Copies the verified index's exact bytes (never a re-serialized or rebuilt index) to
/// each floating tag the plan lets move, when `Pointer::decide` still says so over what
/// the registry holds at this moment: a plan that went stale never moves one backwards.
async fn move_pointers(
    plan: &PublishPlan,
    registry: &Registry,
    index_digest: &str,
) -> anyhow::Result<Vec<String>> {
    let (index_bytes, _) = registry.manifest(index_digest).await?.context("the verified index vanished")?;
    let media_type = match Document::parse(&index_bytes, index_digest)?.media_type() {
        declared if declared.is_empty() => oci::OCI_INDEX.to_owned(),
        declared => declared,
    };
    let version = &plan.release.version;
    let mut moved = Vec::new();
    let mut published = plan.release.released.clone();
    published.extend(plan::released_images(registry).await?);
    for pointer in Pointer::of(version) {
        let tag = pointer.tag();
        let planned = plan.release.image.pointers.iter().find(|p| p.tag == tag).map(|p| &p.decision);
        let Some(planned) = planned.filter(|decision| decision.moves) else {
            let reason = planned.map_or("not in the plan", |decision| decision.reason.as_str());
            eprintln!("  {tag:<8} stays ({reason})");
            continue;
        };
        let current = match registry.manifest(&tag).await? {
            None => Current::Absent,
            Some((_, at)) if at == index_digest => Current::Version(version.clone()),
            Some((bytes, _)) => match oci::version_of(registry, &bytes).await? {
                Some(at) => Current::Version(at),
                None => Current::Unversioned,
            },
        };
        let now = pointer.decide(version, &published, &current);
        if !now.moves {
            eprintln!("  {tag:<8} stays ({}; the plan said: {})", now.reason, planned.reason);
            continue;
        }
        if current != Current::Version(version.clone()) {
            registry
                .push_manifest(&tag, &index_bytes, &media_type)
                .await
                .with_context(|| format!("pointing {tag} at {index_digest}"))?;
        }
        eprintln!("  {tag:<8} -> {} ({})", plan.version_tag(), now.reason);
        moved.push(tag);
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
    use crate::{
        oci::Repository,
        plan::{self, Kind, World},
        platform::Platform,
        prepare::DependencyPath,
    };

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
            builder_reason: "buildx's docker-container driver can make this".into(),
            base_image: "python:3.11-slim".into(),
            build_args: vec![("BASE_IMAGE", "python:3.11-slim".into()), ("VERSION", "1.3.0".into())],
            context: "agent-runner".into(),
            credentials_source: "GITHUB_TOKEN".into(),
            explicit_auth: None,
            sbom_generator: None,
            cache_from: vec!["type=gha".into()],
            cache_to: vec!["type=gha,mode=max".into()],
            signer: Some(crate::sign::Signer::Keyless),
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
