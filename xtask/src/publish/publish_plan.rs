//! `PublishPlan`: what one `image --push` or `--merge` will do (repository, platforms,
//! builder and why, credentials, caches, the release plan's pointers) and the text
//! `--dry-run` prints. Below `publish.rs` and the builders it drives (`buildx.rs`,
//! `engine_push.rs`, `index.rs`), which all read it: none of them imports `publish`.

use std::path::PathBuf;

use oci_client::secrets::RegistryAuth;

use crate::{
    build::prepare::DependencyPath, plan::ReleasePlan, platform::Platform, publish::sign::Signer,
    registry::oci::Repository,
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
    /// Why that builder: what `--dry-run` prints under it.
    pub(crate) builder_reason: String,
    /// What every stage is built from: the Dockerfile's pin (by digest) unless
    /// `--base-image` overrides it. `None` only for a merge in a checkout that pins none:
    /// it builds nothing.
    pub(crate) base_image: Option<String>,
    pub(crate) build_args: Vec<(&'static str, String)>,
    pub(crate) context: PathBuf,
    pub(crate) credentials_source: String,
    /// Credentials that are not in the Docker config, for buildx (see `buildx.rs`).
    pub(crate) explicit_auth: Option<RegistryAuth>,
    /// buildx's SBOM generator image [default: BuildKit's own].
    pub(crate) sbom_generator: Option<String>,
    pub(crate) cache_from: Vec<String>,
    pub(crate) cache_to: Vec<String>,
    /// `--no-cache`: every step built again, no layer from any cache.
    pub(crate) no_cache: bool,
    /// How the verified index is signed before any pointer moves; `None`: not signed.
    pub(crate) signer: Option<Signer>,
}

impl PublishPlan {
    pub(crate) fn version_tag(&self) -> String {
        self.release.tag.clone()
    }

    /// The commit every published image must be built from: the `REVISION` build
    /// argument (absent only in the bench, which builds without provenance).
    pub(crate) fn revision(&self) -> Option<&str> {
        self.build_args.iter().find(|(name, _)| *name == "REVISION").map(|(_, value)| value.as_str())
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
            out += &format!("               ({})\n", self.builder_reason);
            out += &format!("  dependencies {dependencies}\n");
            out += &format!("  base image   {}\n", self.base_image.as_deref().unwrap_or("none"));
            if self.no_cache {
                out += "  cache        none: every step is built again (--no-cache)\n";
            }
        }
        out += &format!("  credentials  {}\n", self.credentials_source);
        let signing =
            self.signer.as_ref().map_or("none (no --cosign-key or --keyless)".to_owned(), Signer::describe);
        out += &format!("  signing      {signing}\n");
        out += "steps:\n";
        let by_digest = format!("{}@<digest>", self.repository);
        if let Some(digest) = &self.release.image.published {
            out += &format!(
                "  1. {tagged} is published already as {digest}: reuse it if it is this release's (it verifies, \
                 its revision is this commit, it carries this release's signature), else refuse; build nothing\n"
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
                    out += &format!(
                        "  1. build {} and push it as {by_digest}, with no tag\n",
                        platforms.join(" and ")
                    );
                }
                PublishMode::Merge(digests) => {
                    out += &format!(
                        "  1. assemble the index of {} and push it as {by_digest}, with no tag\n",
                        digests.join(", ")
                    );
                }
            }
        }
        out += &format!("  2. verify {by_digest} with the OCI client\n");
        match &self.signer {
            Some(_) => out += &format!("  3. sign {by_digest}; a failed signature tags nothing\n"),
            None => out += "  3. sign nothing\n",
        }
        out += &format!(
            "  4. tag {tagged} (refused if it names another digest; read back to catch a concurrent publish)\n"
        );
        if self.release.image.pointers.is_empty() {
            out += "  5. move no floating tag\n";
        }
        for pointer in &self.release.image.pointers {
            let verb = if pointer.decision.moves { "point" } else { "leave" };
            out += &format!("  5. {verb} {} ({})\n", pointer.tag, pointer.decision.reason);
        }
        out
    }
}
