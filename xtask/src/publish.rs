//! `cargo xtask image --push` and `--merge`: publishes the agent-runner for several
//! platforms from a `PublishPlan` (`publish_plan.rs`, what `--dry-run` prints), in
//! layers that run once, top to bottom: a builder pushes everything by digest, with no
//! tag (`buildx.rs` in one multi-platform build, or `engine_push.rs` per platform with
//! the index assembled by `index.rs`); then the index is verified and, when the plan
//! signs, signed by digest; and only then does `tags.rs` write `vX.Y.Z` and move the
//! floating tags the release plan lets move.
//!
//! Scaled out, each platform builds on its own (native) runner and is pushed by digest
//! (`PublishMode::ByDigest`); `PublishMode::Merge` then assembles the index from those
//! digests with the same code the engine builder uses, and shares the same ending.
//! Built from the same commit, both layouts give the same index bytes.
//!
//! Architecture invariant: a published version is reused only when it is ours
//! (`check_ours`: it verifies, its revision is the commit being released, and it
//! carries this release's signature), never rebuilt; anything else under the version
//! tag is refused, and nothing is tagged or moved.
//!
//! The `publish` subsystem holds everything a publish runs through below this module:
//! the plan (`publish_plan`), the two builders (`buildx`, `engine_push`), the index
//! (`index`), verification (`verify`, also `cargo xtask verify-image`), signatures and
//! attestations (`sign`, `attest`) and every tag write (`tags`). It builds through
//! `build` and reaches registries through `registry`; it never imports `image` or
//! `release`.

pub(crate) mod attest;
pub(crate) mod buildx;
pub(crate) mod engine_push;
pub(crate) mod index;
pub(crate) mod publish_plan;
pub(crate) mod sign;
pub(crate) mod tags;
pub(crate) mod verify;

use std::time::Instant;

use anyhow::{bail, Context};
use xshell::Shell;

use crate::{
    build::engine::Engine,
    publish::publish_plan::{Builder, PublishMode, PublishPlan, Steps},
    registry::{
        digest::sha256_digest,
        document::{self, is_attestation, platform_of},
        oci::{self, Registry},
    },
};

/// Runs the plan: builder (or merge), then verification, signature, the version tag and
/// the pointers; or, by digest, only the build and the push of one platform.
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
    let index_digest = match reuse_published(sh, plan, steps, registry).await? {
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
                    Builder::Buildx => buildx::build_and_push(sh, plan, registry).await?,
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
                index::push(plan, registry, &index::assemble(plan, entries)).await?
            }
            (PublishMode::Index, Builder::Engine) => {
                let engine = Engine::connect(sh)?;
                let mut entries = Vec::new();
                for &platform in &plan.platforms {
                    entries.push(
                        engine_push::push_platform(sh, &engine, plan, steps, registry, platform).await?,
                    );
                }
                index::push(plan, registry, &index::assemble(plan, entries)).await?
            }
            (PublishMode::Index, Builder::Buildx) => buildx::build_and_push(sh, plan, registry).await?,
        },
    };
    verify_and_sign(sh, plan, registry, &index_digest).await?;
    tags::write_version(plan, registry, &index_digest).await?;
    let moved = tags::move_pointers(sh, plan, registry, &index_digest).await?;
    eprintln!("\n==> published {}@{index_digest}", plan.repository);
    let mut tags = vec![plan.version_tag()];
    tags.extend(moved);
    eprintln!("  tags               {}", tags.join(", "));
    eprintln!("  blob bytes uploaded {}", registry.uploaded_bytes());
    eprintln!("  registry requests  {}", registry.requests());
    eprintln!("  time               {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A dry run of a `--by-digest` push (release.yml's image-platform jobs in a dry run):
/// the platform is built for real, by the builder a real run would use, so that the
/// builder, the base image and the registry login are exercised, and nothing is pushed.
/// Returns the digest a push would have sent.
pub(crate) async fn build_without_pushing(
    sh: &Shell,
    plan: &PublishPlan,
    steps: &Steps,
    registry: &Registry,
) -> anyhow::Result<String> {
    registry.check_push_access().await?;
    let [platform] = plan.platforms[..] else {
        bail!("--by-digest builds one platform; give --platform once");
    };
    Ok(match plan.builder {
        Builder::Engine => {
            let engine = Engine::connect(sh)?;
            engine_push::build_platform(sh, &engine, plan, steps, platform)?.descriptor.digest().to_string()
        }
        Builder::Buildx => buildx::layout_digest(&buildx::build(sh, plan)?.path().join("layout"))?,
    })
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
/// build times). It is reused only when it is ours: it verifies, it was built from this
/// commit, and it carries this release's signature; anything else under the version tag
/// (a third party's push) is refused. A merge whose digests are not in the published
/// index is refused: the version would change.
async fn reuse_published(
    sh: &Shell,
    plan: &PublishPlan,
    steps: &Steps,
    registry: &Registry,
) -> anyhow::Result<Reuse> {
    let tag = plan.version_tag();
    let Some((bytes, digest)) = registry.manifest(&tag).await? else { return Ok(Reuse::Nothing) };
    eprintln!("==> {}:{tag} is published already as {digest}: nothing is rebuilt", plan.repository);
    check_ours(sh, plan, registry, &digest).await?;
    match &steps.mode {
        PublishMode::ByDigest => {
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
            bail!(tags::write_once_refusal(plan, &digest, &merged))
        }
        PublishMode::Merge(_) | PublishMode::Index => Ok(Reuse::Index(digest)),
    }
}

/// Whether the index under the version tag is this release's own: it verifies, its
/// revision is the commit being released, and (when the release signs) it carries this
/// release's signature. Otherwise the version cannot be published: refused with both
/// digests' story and the next patch.
async fn check_ours(sh: &Shell, plan: &PublishPlan, registry: &Registry, digest: &str) -> anyhow::Result<()> {
    let tagged = format!("{}:{}", plan.repository, plan.version_tag());
    let refuse = |why: String| {
        let next = tags::next_patch(plan);
        anyhow::anyhow!(
            "{tagged} names {digest}, which {why}: it is not this release's, and a published version \
             never changes. Nothing was built, tagged or moved. Find out who pushed it; then cut the \
             next patch (`cargo xtask release --bump patch`, v{next})"
        )
    };
    verify::verify(registry, digest, &plan.release.platforms()?, plan.revision(), &[])
        .await
        .map_err(|err| refuse(format!("fails verification ({err:#})")))?;
    if let Some(signer) = &plan.signer {
        let reference = format!("{}@{digest}", plan.repository);
        let config = login_config(sh, plan)?;
        let (_key, verifier) = sign::own_verifier(sh, signer, &plan.version_tag())?;
        if let Err(err) = sign::verify_image(sh, &verifier, &reference, config.as_ref().map(|d| d.path()))? {
            return Err(refuse(format!("is not signed by {} ({err})", verifier.describe())));
        }
    }
    Ok(())
}

/// cosign reads registry logins from a Docker config only: explicit credentials reach
/// it the way buildx gets them.
fn login_config(sh: &Shell, plan: &PublishPlan) -> anyhow::Result<Option<tempfile::TempDir>> {
    match &plan.explicit_auth {
        Some(auth) => Ok(Some(buildx::private_docker_config(sh, &plan.repository.registry, auth)?)),
        None => Ok(None),
    }
}

/// Verifies the index pushed by digest, and signs it by digest when the plan signs:
/// what happens before anything is tagged.
async fn verify_and_sign(
    sh: &Shell,
    plan: &PublishPlan,
    registry: &Registry,
    index_digest: &str,
) -> anyhow::Result<()> {
    let reference = format!("{}@{index_digest}", plan.repository);
    eprintln!("==> verifying {reference}");
    let report = verify::verify(registry, index_digest, &plan.release.platforms()?, plan.revision(), &[]).await.with_context(|| {
        format!("{reference} failed verification; nothing was tagged. Fix the cause and run the same command again")
    })?;
    let image = oci::ImageRef { repository: plan.repository.clone(), target: index_digest.to_owned() };
    eprint!("{}", report.table(&image));
    let Some(signer) = &plan.signer else { return Ok(()) };
    eprintln!("==> signing {reference} ({})", signer.describe());
    let config = login_config(sh, plan)?;
    let config = config.as_ref().map(|dir| dir.path());
    // A rerun with the same key adds no second signature (nor attestations).
    let own = sign::own_verifier(sh, signer, &plan.version_tag())?;
    let passes = |outcome: anyhow::Result<Result<(), String>>| outcome.is_ok_and(|outcome| outcome.is_ok());
    let done = |kind: Option<&str>| match kind {
        None => passes(sign::verify_image(sh, &own.1, &reference, config)),
        Some(kind) => passes(sign::verify_attestation(sh, &own.1, &reference, kind, config)),
    };
    if done(None) {
        eprintln!("  signed with this key already");
    } else {
        sign::sign_image(sh, signer, &reference, config)
            .context("nothing was tagged; fix the cause and run the same command again")?;
    }
    // BuildKit's attestations are entries of the index, covered by its signature;
    // an index without them (the engine builder's) gets both as cosign attestations.
    let attested = done(Some("spdxjson")) && done(Some("slsaprovenance1"));
    if report.attestations == 0 && !attested {
        attest::attach(sh, plan, signer, index_digest, config)
            .context("nothing was tagged; fix the cause and run the same command again")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{
        build::prepare::DependencyPath,
        plan::{self, Kind, World},
        platform::Platform,
        registry::oci::Repository,
    };

    fn version(text: &str) -> semver::Version {
        semver::Version::parse(text).unwrap()
    }

    const BASE: &str =
        "python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff";

    fn plan() -> PublishPlan {
        let repository: Repository = "ghcr.io/stigmer/agent-runner".parse().unwrap();
        PublishPlan {
            release: plan::compute(
                &version("1.3.0"),
                Kind::Release,
                false,
                &repository,
                Some(BASE),
                &World::default(),
            ),
            repository,
            platforms: Platform::ALL.to_vec(),
            builder: Builder::Buildx,
            builder_reason: "buildx's docker-container driver can make this".into(),
            base_image: Some(BASE.into()),
            build_args: vec![("BASE_IMAGE", BASE.into()), ("VERSION", "1.3.0".into())],
            context: "agent-runner".into(),
            credentials_source: "GITHUB_TOKEN".into(),
            explicit_auth: None,
            sbom_generator: None,
            cache_from: vec!["type=gha".into()],
            cache_to: vec!["type=gha,mode=max".into()],
            no_cache: false,
            signer: Some(crate::publish::sign::Signer::Keyless),
        }
    }

    #[test]
    fn the_buildx_command_writes_an_oci_layout_and_pushes_nothing() {
        let args = buildx::args(&plan(), Path::new("/tmp/layout"), 1_764_806_400);
        insta::assert_snapshot!(args.join(" "), @"buildx build --platform linux/amd64,linux/arm64 --output type=oci,dest=/tmp/layout,tar=false,rewrite-timestamp=true --build-arg SOURCE_DATE_EPOCH=1764806400 --provenance=mode=max --sbom=true --build-arg BASE_IMAGE=python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff --build-arg VERSION=1.3.0 --cache-from type=gha --cache-to type=gha,mode=max agent-runner");
        let rebuild = PublishPlan { no_cache: true, ..plan() };
        let args = buildx::args(&rebuild, Path::new("/tmp/layout"), 0).join(" ");
        assert!(args.contains(" --no-cache "), "{args}");
    }

    #[test]
    fn a_given_sbom_generator_replaces_buildkits_default_scanner() {
        let plan = PublishPlan { sbom_generator: Some("127.0.0.1:5000/sbom-scanner:test".into()), ..plan() };
        let args = buildx::args(&plan, Path::new("/tmp/layout"), 0).join(" ");
        assert!(args.contains(" --attest type=sbom,generator=127.0.0.1:5000/sbom-scanner:test "), "{args}");
        assert!(!args.contains("--sbom=true"), "{args}");
    }

    #[test]
    fn the_dry_run_plan_names_every_tag_in_order() {
        insta::assert_snapshot!(plan().describe(&Steps::default()));
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
