//! `cargo xtask image`: builds the agent-runner image. `--local` builds one platform
//! into the local engine and tags it `stigmer-agent-runner:local` and `:vX.Y.Z`, the
//! names the `stigmer` CLI looks for first (`build_local`, which `release --snapshot`
//! calls too); `--push` and `--merge` hand a `PublishPlan` to `publish.rs`.

use std::{io::Read, path::PathBuf, time::Instant};

use anyhow::{bail, Context};
use xshell::Shell;

use oci_client::secrets::RegistryAuth;

use crate::{
    build::{
        engine::Engine,
        prepare::{BuildRequest, DependencyPath, LOCAL_BUILD_LABEL},
    },
    flags::{self, BuilderChoice},
    human::human_bytes,
    plan::{self, ReleasePlan},
    platform::Platform,
    pointer::Decision,
    project::{self, BaseImage},
    publish::{
        self,
        buildx::Capabilities,
        publish_plan::{Builder, PublishMode, PublishPlan, Steps},
        sign::Signer,
    },
    registry::{
        credentials::{self, ExplicitLogin},
        oci::{self, Registry, Repository, RetryPolicy},
    },
    version,
};

impl flags::Image {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        if self.push || !self.merge.is_empty() {
            return self.push(sh);
        }
        let platform = match self.platform.as_slice() {
            [] => Platform::host(),
            [one] => *one,
            _ => bail!("--local builds one platform; give --platform once, or use --push for several"),
        };
        let base = project::base_for_build(sh, self.base_image.as_deref(), None)?;
        let build = LocalBuild {
            platform,
            base_image: &base,
            name: &self.name,
            context: self.context.clone().unwrap_or_else(|| project::root().join("agent-runner")),
            dependency_path: self.dependency_path(),
        };
        build_local(sh, &build).map(drop)
    }

    fn push(self, sh: &Shell) -> anyhow::Result<()> {
        let login = match self.username.clone() {
            Some(username) => {
                let mut password = String::new();
                std::io::stdin().read_to_string(&mut password).context("reading the password from stdin")?;
                Some(ExplicitLogin { username, password: password.trim_end_matches(['\n', '\r']).to_owned() })
            }
            None => None,
        };
        let from_plan = match &self.plan {
            Some(path) => Some(ReleasePlan::read(&sh.current_dir().join(path))?),
            None => None,
        };
        let repository: Repository = match &from_plan {
            Some(plan) => plan.repository()?,
            None => format!("{}/agent-runner", self.registry.trim_end_matches('/')).parse()?,
        };
        let (auth, credentials_source) = credentials::resolve(sh, &repository.registry, login)?;
        // buildx reads the Docker config only: what came from elsewhere is handed to it.
        let explicit_auth = (!credentials::in_docker_config(&credentials_source)
            && auth != RegistryAuth::Anonymous)
            .then(|| auth.clone());
        let registry = oci::block_on(Registry::connect(
            repository.clone(),
            auth,
            credentials_source.clone(),
            RetryPolicy::default(),
        ));
        let mut release = match from_plan {
            Some(plan) => plan,
            None => {
                let version = match &self.version {
                    Some(text) => version::parse(text).context("--version")?,
                    None => project::workspace_version(sh)?,
                };
                oci::block_on(plan::for_version(sh, &version, self.dry_run, &registry, false))?
            }
        };
        if self.no_latest {
            for pointer in &mut release.image.pointers {
                pointer.decision = Decision { moves: false, reason: "--no-latest".to_owned() };
            }
        }
        let (builder, builder_reason) = match self.builder {
            // A merge builds nothing: no builder to ask.
            _ if !self.merge.is_empty() => (Builder::Engine, "--merge builds nothing".to_owned()),
            BuilderChoice::Engine => (Builder::Engine, "--builder engine".to_owned()),
            choice => choose_builder(choice, Capabilities::of_current_builder(sh))?,
        };
        let platforms = if self.platform.is_empty() { release.platforms()? } else { self.platform.clone() };
        let steps = Steps {
            mode: match (self.by_digest, self.merge.is_empty()) {
                (true, _) => PublishMode::ByDigest,
                (false, true) => PublishMode::Index,
                (false, false) => PublishMode::Merge(self.merge.clone()),
            },
            dependency_path: self.dependency_path(),
        };
        if self.by_digest && platforms.len() != 1 {
            bail!("--by-digest pushes one platform per run: give --platform once (e.g. --platform linux/arm64), then --merge the digests");
        }
        // A merge builds nothing: it needs a base only for the SBOM of an index without
        // BuildKit's, so a checkout that pins none (no Dockerfile) can still merge.
        let base = match (&self.base_image, &release.image.base_image) {
            (None, None) if !self.merge.is_empty() => None,
            (given, planned) => Some(project::base_for_build(sh, given.as_deref(), planned.as_deref())?),
        };
        let mut build_args = build_args(sh, base.as_ref(), &release.version)?;
        if self.allow_emulation && builder == Builder::Buildx {
            // The Dockerfile's prepare stage runs on $BUILDPLATFORM unless told one
            // platform to run on; one buildx build cannot name one per platform.
            let [platform] = platforms[..] else {
                bail!("--allow-emulation with buildx builds one platform at a time: add --by-digest and --platform, or use --builder engine");
            };
            build_args.extend([("PREPARE_PLATFORM", platform.to_string()), ("EMULATED", "1".to_owned())]);
        }
        let dry_run = self.dry_run || release.dry_run;
        let plan = PublishPlan {
            release,
            repository,
            platforms,
            builder,
            builder_reason,
            base_image: base.map(|base| base.reference),
            build_args,
            context: self.context.clone().unwrap_or_else(|| project::root().join("agent-runner")),
            credentials_source,
            explicit_auth,
            sbom_generator: self.sbom_generator.clone(),
            // No cache unless asked for: inside GitHub Actions too (release.yml says why).
            cache_from: self.cache_from.clone(),
            cache_to: self.cache_to.clone(),
            no_cache: self.no_cache,
            signer: Signer::from_flags(
                self.cosign_key.as_ref().map(|key| sh.current_dir().join(key)),
                self.keyless,
            ),
        };
        eprint!("{}", plan.describe(&steps));
        if dry_run {
            if let PublishMode::ByDigest = steps.mode {
                let digest = oci::block_on(publish::build_without_pushing(sh, &plan, &steps, &registry))?;
                eprintln!("dry run: built {} as {digest}, pushed nothing", plan.platforms[0]);
                return Ok(());
            }
            eprintln!("dry run: nothing built, nothing pushed");
            return Ok(());
        }
        oci::block_on(publish::publish_steps(sh, &plan, &steps, &registry))
    }
}

/// What `image --local` (and `release --snapshot`) builds into the engine.
pub(crate) struct LocalBuild<'a> {
    pub(crate) platform: Platform,
    pub(crate) base_image: &'a BaseImage,
    /// Tagged `NAME:local` and `NAME:vX.Y.Z`.
    pub(crate) name: &'a str,
    pub(crate) context: PathBuf,
    pub(crate) dependency_path: DependencyPath,
}

/// Builds one platform into the local engine and reports on it; returns the tags.
pub(crate) fn build_local(sh: &Shell, build: &LocalBuild<'_>) -> anyhow::Result<Vec<String>> {
    let platform = build.platform;
    let engine = Engine::connect(sh)?;
    let version = project::workspace_version(sh)?;
    let tags = vec![format!("{}:local", build.name), format!("{}:v{version}", build.name)];
    let build_args = build_args(sh, Some(build.base_image), &version)?;
    let previous = engine.inspect(sh, &tags[0])?;
    let base = engine.inspect(sh, &build.base_image.reference)?;

    eprintln!(
        "==> building {} for {platform} from {} with {}",
        tags[0],
        build.base_image.reference,
        engine.program()
    );
    let started = Instant::now();
    let id = engine.build_with(
        sh,
        &BuildRequest {
            context: &build.context,
            platform,
            tags: &tags,
            labels: &[LOCAL_BUILD_LABEL.to_owned()],
            build_args: &build_args,
            pull: false,
            no_cache: false,
        },
        build.dependency_path,
    )?;
    let elapsed = started.elapsed();
    let built = engine.inspect(sh, &id)?.context("the image just built is not in the engine")?;
    if built.architecture != platform.arch() {
        bail!(
            "the image was built for {platform} but its config says {}: the engine reused an image \
             of another platform (the legacy builder's cache ignores --platform). Remove it with \
             `docker image rm {}` and build again",
            built.architecture,
            tags[0]
        );
    }

    let layers = LayerCount::of(
        &built.layers,
        base.as_ref().map(|b| &b.layers[..]),
        previous.as_ref().map(|p| p.layers.clone()),
    );
    eprintln!("\n==> built {}", tags.join(", "));
    eprintln!("  id        {}", built.id);
    match &base {
        Some(base) => eprintln!(
            "  size      {} ({} over the base {})",
            human_bytes(built.size),
            human_bytes(built.size.saturating_sub(base.size)),
            build.base_image.reference
        ),
        None => eprintln!("  size      {}", human_bytes(built.size)),
    }
    eprintln!("  time      {:.1} s", elapsed.as_secs_f64());
    match &previous {
        Some(_) => eprintln!(
            "  layers    {} from the base, {} reused, {} rebuilt",
            layers.from_base, layers.reused, layers.rebuilt
        ),
        None => eprintln!(
            "  layers    {} from the base, {} of its own (no earlier {} to compare with)",
            layers.from_base, layers.rebuilt, tags[0]
        ),
    }
    Ok(tags)
}

impl flags::Image {
    fn dependency_path(&self) -> DependencyPath {
        if self.allow_emulation {
            DependencyPath::Emulated
        } else {
            DependencyPath::BuildPlatform
        }
    }
}

/// The Dockerfile's build arguments: base (with its labels), version and provenance
/// labels. CREATED is the source date, not now, so that rebuilding a commit changes
/// nothing.
pub(crate) fn build_args(
    sh: &Shell,
    base: Option<&BaseImage>,
    version: &semver::Version,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut args: Vec<_> = base.map(BaseImage::build_args).into_iter().flatten().collect();
    args.extend([
        ("VERSION", version.to_string()),
        ("REVISION", project::git_revision(sh)),
        ("CREATED", project::source_date(sh)?.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    ]);
    Ok(args)
}

/// The builder for this push and why: buildx where its builder can make what is asked,
/// else the engine builder (`--builder buildx` then fails saying what is missing).
fn choose_builder(
    choice: BuilderChoice,
    found: Result<Capabilities, String>,
) -> anyhow::Result<(Builder, String)> {
    let usable = found.and_then(|buildx| match buildx.cannot() {
        Some(why) => Err(why),
        None => Ok(buildx),
    });
    Ok(match (choice, usable) {
        (BuilderChoice::Engine, _) => (Builder::Engine, "--builder engine".to_owned()),
        (BuilderChoice::Buildx, Ok(buildx)) => {
            (Builder::Buildx, format!("--builder buildx ({} driver)", buildx.driver))
        }
        (BuilderChoice::Buildx, Err(why)) => {
            bail!("--builder buildx cannot make this image: {why}; or use --builder engine")
        }
        (BuilderChoice::Auto, Ok(buildx)) => {
            (Builder::Buildx, format!("buildx's {} driver can make this", buildx.driver))
        }
        (BuilderChoice::Auto, Err(why)) => (Builder::Engine, why),
    })
}

/// How the layers of a new image relate to its base and to the image the same tag
/// named before the build: what a warm rebuild is judged by.
#[derive(Debug, PartialEq)]
struct LayerCount {
    from_base: usize,
    reused: usize,
    rebuilt: usize,
}

impl LayerCount {
    fn of(built: &[String], base: Option<&[String]>, previous: Option<Vec<String>>) -> LayerCount {
        let base = base.unwrap_or_default();
        let previous = previous.unwrap_or_default();
        let from_base = built.iter().filter(|layer| base.contains(layer)).count();
        let reused = built.iter().filter(|layer| !base.contains(layer) && previous.contains(layer)).count();
        LayerCount { from_base, reused, rebuilt: built.len() - from_base - reused }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_is_chosen_by_what_it_can_do_not_by_buildx_answering() {
        let driver =
            |driver: &str, containerd_store| Ok(Capabilities { driver: driver.to_owned(), containerd_store });
        let auto = |found| choose_builder(BuilderChoice::Auto, found).unwrap();
        // GitHub's setup-buildx-action: a docker-container builder does everything.
        assert_eq!(auto(driver("docker-container", false)).0, Builder::Buildx);
        assert_eq!(auto(driver("remote", false)).0, Builder::Buildx);
        // The docker driver: only on the containerd image store (by digest too: buildx
        // writes an OCI layout, which xtask pushes).
        assert_eq!(auto(driver("docker", true)).0, Builder::Buildx);
        let (builder, why) = auto(driver("docker", false));
        assert_eq!(builder, Builder::Engine);
        assert!(why.contains("containerd image store"), "{why}");
        let (builder, why) = auto(Err("no buildx".to_owned()));
        assert_eq!((builder, why.as_str()), (Builder::Engine, "no buildx"));

        // Asked for by name, buildx that cannot is an error saying what to do.
        let refused = choose_builder(BuilderChoice::Buildx, driver("docker", false)).unwrap_err();
        assert!(refused.to_string().contains("or use --builder engine"), "{refused}");
        let (builder, _) = choose_builder(BuilderChoice::Engine, driver("docker-container", false)).unwrap();
        assert_eq!(builder, Builder::Engine);
    }

    fn layers(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_warm_rebuild_counts_only_the_changed_layer_as_rebuilt() {
        let base = layers(&["b1", "b2"]);
        let previous = layers(&["b1", "b2", "venv", "app-old"]);
        let built = layers(&["b1", "b2", "venv", "app-new"]);
        let count = LayerCount::of(&built, Some(&base), Some(previous));
        assert_eq!(count, LayerCount { from_base: 2, reused: 1, rebuilt: 1 });
    }

    #[test]
    fn a_first_build_without_a_local_base_rebuilds_everything() {
        let count = LayerCount::of(&layers(&["a", "b"]), None, None);
        assert_eq!(count, LayerCount { from_base: 0, reused: 0, rebuilt: 2 });
    }
}
