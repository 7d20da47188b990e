//! `cargo xtask image --push`: publishes the agent-runner for several platforms.
//!
//! A `PublishPlan` is computed first (`--dry-run` prints it). Then a builder produces
//! an index under `vX.Y.Z`: `buildx` in one multi-platform build (GitHub's runners), or
//! `engine` (our machines, Podman): each platform built through the engine, saved,
//! its layers gzipped reproducibly, every blob pushed only if the registry lacks it,
//! each manifest pushed by digest and the OCI index assembled here. Both then share
//! the ending: verify the index, and only then copy its exact bytes to the aliases.
//!
//! Scaled out, each platform builds on its own (native) runner and is pushed by digest
//! with no tag (`PublishMode::ByDigest`); `PublishMode::Merge` then assembles the index
//! from those digests with the same code the engine builder uses, and shares the same
//! ending. Built from the same commit, both layouts give the same index bytes.
//!
//! Architecture invariant: `latest`, `vX.Y` and `vX` are only ever written with the
//! bytes of an index that `verify::verify` has just passed, and never for a pre-release.

use std::{
    io::{BufReader, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::{
    engine::{BuildRequest, Engine},
    image::human_bytes,
    oci::{self, Registry, Repository},
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
    pub(crate) repository: Repository,
    pub(crate) version: semver::Version,
    pub(crate) platforms: Vec<Platform>,
    pub(crate) builder: Builder,
    pub(crate) base_image: String,
    pub(crate) build_args: Vec<(&'static str, String)>,
    /// `vX.Y.Z`, pushed first.
    pub(crate) version_tag: String,
    /// Moved after verification: `latest`, `vX.Y`, `vX`; none for a pre-release.
    pub(crate) aliases: Vec<String>,
    pub(crate) context: PathBuf,
    pub(crate) credentials_source: String,
    pub(crate) cache_from: Vec<String>,
    pub(crate) cache_to: Vec<String>,
    /// buildx's SBOM scanner image; `None` is BuildKit's default.
    pub(crate) sbom_generator: Option<String>,
}

/// The tags that follow a release once it is verified. A pre-release moves none:
/// `latest` must never name a release candidate (metadata-action's `latest=auto` trap).
pub(crate) fn alias_tags(version: &semver::Version, no_latest: bool) -> Vec<String> {
    if no_latest || !version.pre.is_empty() {
        return Vec::new();
    }
    vec!["latest".to_owned(), format!("v{}.{}", version.major, version.minor), format!("v{}", version.major)]
}

impl PublishPlan {
    pub(crate) fn describe(&self, steps: &Steps) -> String {
        let kind = if self.version.pre.is_empty() { "release" } else { "pre-release: no alias moves" };
        let builder = match self.builder {
            Builder::Buildx => "buildx (one multi-platform build, attestations on)",
            Builder::Engine => "engine (per-platform builds, index assembled with the OCI client)",
        };
        let dependencies = match steps.dependency_path {
            DependencyPath::BuildPlatform => "wheels for each platform, chosen on the build platform",
            DependencyPath::Emulated => "installed inside each platform's base image (emulated)",
        };
        let platforms: Vec<String> = self.platforms.iter().map(Platform::to_string).collect();
        let tagged = format!("{}:{}", self.repository, self.version_tag);
        let mut out = String::from("plan: publish the agent-runner image\n");
        out += &format!("  repository   {}\n", self.repository);
        out += &format!("  version      {} ({kind})\n", self.version_tag);
        out += &format!("  platforms    {}\n", platforms.join(", "));
        if !matches!(steps.mode, PublishMode::Merge(_)) {
            out += &format!("  builder      {builder}\n");
            out += &format!("  dependencies {dependencies}\n");
            out += &format!("  base image   {}\n", self.base_image);
        }
        out += &format!("  credentials  {}\n", self.credentials_source);
        out += "steps:\n";
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
                out +=
                    &format!("  1. assemble the index of {} and push it as {tagged}\n", digests.join(", "));
            }
        }
        out += &format!("  2. verify {tagged} with the OCI client\n");
        match self.aliases.as_slice() {
            [] => out += "  3. move no alias tag\n",
            aliases => out += &format!("  3. then point {} at the verified digest\n", aliases.join(", ")),
        }
        out
    }

    /// The `docker buildx build` arguments for this plan.
    pub(crate) fn buildx_args(&self, mode: &PublishMode, metadata_file: &Path) -> Vec<String> {
        let platforms: Vec<String> = self.platforms.iter().map(Platform::to_string).collect();
        let mut args: Vec<String> =
            vec!["buildx".into(), "build".into(), "--platform".into(), platforms.join(",")];
        match mode {
            // No tag: the merge step tags the index once every platform is in.
            PublishMode::ByDigest => args.extend([
                "--output".into(),
                format!(
                    "type=image,name={},push-by-digest=true,name-canonical=true,push=true",
                    self.repository
                ),
            ]),
            _ => args.extend([
                "--push".into(),
                "--tag".into(),
                format!("{}:{}", self.repository, self.version_tag),
            ]),
        }
        args.extend([
            "--metadata-file".into(),
            metadata_file.display().to_string(),
            "--provenance=mode=max".into(),
            match &self.sbom_generator {
                Some(generator) => format!("--attest=type=sbom,generator={generator}"),
                None => "--sbom=true".into(),
            },
        ]);
        for (name, value) in &self.build_args {
            args.extend(["--build-arg".into(), format!("{name}={value}")]);
        }
        for cache in &self.cache_from {
            args.extend(["--cache-from".into(), cache.clone()]);
        }
        for cache in &self.cache_to {
            args.extend(["--cache-to".into(), cache.clone()]);
        }
        args.push(self.context.display().to_string());
        args
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
    registry.check_credentials().await.with_context(|| format!("checking access to {}", plan.repository))?;
    let index_digest = match (&steps.mode, plan.builder) {
        (PublishMode::ByDigest, builder) => {
            let digest = match builder {
                Builder::Engine => {
                    let engine = Engine::connect(sh)?;
                    let [platform] = plan.platforms[..] else {
                        bail!("--by-digest pushes one platform; give --platform once");
                    };
                    push_platform(sh, &engine, plan, steps, registry, platform).await?["digest"]
                        .as_str()
                        .context("a descriptor has a digest")?
                        .to_owned()
                }
                Builder::Buildx => build_with_buildx(sh, plan, &steps.mode)?,
            };
            eprintln!("\n==> pushed {}@{digest} (no tag)", plan.repository);
            eprintln!("  blob bytes uploaded {}", registry.uploaded_bytes());
            eprintln!("  time               {:.1} s", started.elapsed().as_secs_f64());
            eprintln!("  next: cargo xtask image --merge {digest},<the other platforms' digests>");
            // The one line on stdout, for scripts: `digest=$(cargo xtask image ... --by-digest)`.
            println!("{digest}");
            return Ok(());
        }
        (PublishMode::Merge(digests), _) => merge(plan, registry, digests).await?,
        (PublishMode::Index, Builder::Engine) => publish_with_engine(sh, plan, steps, registry).await?,
        (PublishMode::Index, Builder::Buildx) => build_with_buildx(sh, plan, &steps.mode)?,
    };
    verify_then_alias(plan, registry, &index_digest).await?;
    eprintln!("\n==> published {}@{index_digest}", plan.repository);
    let mut tags = vec![plan.version_tag.clone()];
    tags.extend(plan.aliases.iter().cloned());
    eprintln!("  tags               {}", tags.join(", "));
    eprintln!("  blob bytes uploaded {}", registry.uploaded_bytes());
    eprintln!("  registry requests  {}", registry.requests());
    eprintln!("  time               {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The ending every publish shares: verify the index under the version tag, and only
/// then copy its exact bytes to the aliases.
async fn verify_then_alias(
    plan: &PublishPlan,
    registry: &Registry,
    index_digest: &str,
) -> anyhow::Result<()> {
    let tagged = format!("{}:{}", plan.repository, plan.version_tag);
    eprintln!("==> verifying {tagged}");
    let report = verify::verify(registry, &plan.version_tag, &plan.platforms, &[]).await.with_context(|| {
        format!("{tagged} was pushed but failed verification; no alias was moved. Fix the cause and run the same command again")
    })?;
    if report.index_digest != index_digest {
        bail!("{tagged} resolves to {}, not to the index just pushed ({index_digest}): another publish raced this one; no alias was moved", report.index_digest);
    }
    let image =
        crate::oci::ImageRef { repository: plan.repository.clone(), target: plan.version_tag.clone() };
    eprint!("{}", report.table(&image));

    // Copy the verified bytes, never a re-serialized or rebuilt index.
    let (index_bytes, _) = registry.manifest(index_digest).await?.context("the verified index vanished")?;
    let media_type = serde_json::from_slice::<Value>(&index_bytes)?["mediaType"]
        .as_str()
        .unwrap_or(oci::OCI_INDEX)
        .to_owned();
    for alias in &plan.aliases {
        registry
            .push_manifest(alias, &index_bytes, &media_type)
            .await
            .with_context(|| format!("pointing {alias} at {index_digest}"))?;
    }
    let misplaced = verify::tags_elsewhere(registry, &plan.aliases, index_digest).await?;
    if !misplaced.is_empty() {
        bail!("after moving the aliases: {}", misplaced.join("; "));
    }
    Ok(())
}

/// The index of the platform images pushed by digest: each image manifest becomes a
/// descriptor exactly as the engine builder writes one; an index (buildx's image plus
/// attestations) contributes its entries. Then pushed under the version tag.
async fn merge(plan: &PublishPlan, registry: &Registry, digests: &[String]) -> anyhow::Result<String> {
    let mut descriptors = Vec::new();
    for digest in digests {
        if !digest.starts_with("sha256:") {
            bail!("--merge {digest}: give the sha256:... digests that `image --push --by-digest` printed");
        }
        let Some((bytes, actual)) = registry.manifest(digest).await? else {
            bail!("{}@{digest} does not exist: push that platform with `cargo xtask image --push --platform ... --by-digest` first", plan.repository);
        };
        if actual != *digest {
            bail!("{}@{digest} hashes to {actual}", plan.repository);
        }
        let manifest: Value = serde_json::from_slice(&bytes)?;
        if let Some(entries) = manifest["manifests"].as_array() {
            descriptors.extend(entries.iter().cloned());
            continue;
        }
        let config = &manifest["config"];
        let config_digest = config["digest"].as_str().with_context(|| format!("{digest} has no config"))?;
        let config =
            registry.pull_blob_checked(config_digest, config["size"].as_u64().unwrap_or_default()).await?;
        let media_type = manifest["mediaType"].as_str().unwrap_or(oci::OCI_MANIFEST);
        descriptors.push(manifest_descriptor(&bytes, media_type, &serde_json::from_slice(&config)?));
    }
    let mut platforms: Vec<String> =
        descriptors.iter().filter(|d| !is_attestation(d)).map(platform_of).collect();
    platforms.sort();
    if let Some(twice) = platforms.windows(2).find(|pair| pair[0] == pair[1]) {
        bail!("two of the digests are images for {}: give one per platform", twice[0]);
    }
    eprintln!("==> merging {} into {}:{}", platforms.join(", "), plan.repository, plan.version_tag);
    push_index(plan, registry, descriptors).await
}

/// Runs buildx for the plan; returns the digest it pushed (the index, or with
/// `--by-digest` the platform's image and its attestations).
fn build_with_buildx(sh: &Shell, plan: &PublishPlan, mode: &PublishMode) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let metadata_file = dir.path().join("metadata.json");
    let args = plan.buildx_args(mode, &metadata_file);
    cmd!(sh, "docker {args...}").run().context("docker buildx build (its output is above)")?;
    let metadata: Value = serde_json::from_str(&std::fs::read_to_string(&metadata_file)?)?;
    metadata["containerimage.digest"]
        .as_str()
        .map(str::to_owned)
        .context("buildx's metadata file has no containerimage.digest")
}

async fn publish_with_engine(
    sh: &Shell,
    plan: &PublishPlan,
    steps: &Steps,
    registry: &Registry,
) -> anyhow::Result<String> {
    let engine = Engine::connect(sh)?;
    let mut descriptors = Vec::new();
    for &platform in &plan.platforms {
        descriptors.push(push_platform(sh, &engine, plan, steps, registry, platform).await?);
    }
    push_index(plan, registry, descriptors).await
}

/// Builds one platform through the engine and pushes its blobs and manifest by
/// digest; returns the manifest's descriptor for the index.
async fn push_platform(
    sh: &Shell,
    engine: &Engine,
    plan: &PublishPlan,
    steps: &Steps,
    registry: &Registry,
    platform: Platform,
) -> anyhow::Result<Value> {
    eprintln!("==> {platform}: building with {}", engine.program());
    let request = BuildRequest {
        context: &plan.context,
        platform,
        tags: &[],
        build_args: &plan.build_args,
        // The engine keeps one platform per tag: pull the base for this platform
        // now, or a base cached for another platform would be reused silently.
        pull: true,
        no_cache: false,
    };
    let id = engine.build_with(sh, &request, steps.dependency_path)?;
    let image = save_image(sh, engine, &id)?;
    let architecture = image.config_json["architecture"].as_str().unwrap_or_default();
    if architecture != platform.arch() {
        bail!("the {platform} build produced an image for {architecture}; the engine reused another platform's base");
    }
    eprintln!("==> {platform}: pushing {} layers to {}", image.layers.len(), plan.repository);
    let total = image.layers.len();
    for (position, layer) in image.layers.iter().enumerate() {
        let data = Bytes::from(std::fs::read(&layer.path)?);
        let sent = registry.push_blob_if_missing(&layer.digest, data).await?;
        let what = if sent == 0 { "already there" } else { "uploaded" };
        eprintln!(
            "    layer {}/{total} {} {:>9} {what}",
            position + 1,
            short(&layer.digest),
            human_bytes(layer.size)
        );
    }
    let config_digest = oci::sha256_digest(&image.config);
    registry.push_blob_if_missing(&config_digest, image.config.clone()).await?;
    let manifest = Bytes::from(image_manifest(&config_digest, image.config.len(), &image.layers));
    let descriptor = manifest_descriptor(&manifest, oci::OCI_MANIFEST, &image.config_json);
    let manifest_digest = descriptor["digest"].as_str().context("a descriptor has a digest")?;
    registry.push_manifest(manifest_digest, &manifest, oci::OCI_MANIFEST).await?;
    eprintln!("    manifest {manifest_digest}");
    Ok(descriptor)
}

/// An index entry for an image manifest, its platform taken from the image's config:
/// the one spelling both the engine builder and `merge` use, so they agree byte for byte.
fn manifest_descriptor(manifest: &[u8], media_type: &str, config: &Value) -> Value {
    json!({
        "mediaType": media_type,
        "digest": oci::sha256_digest(manifest),
        "size": manifest.len(),
        "platform": { "architecture": config["architecture"], "os": config["os"] },
    })
}

fn is_attestation(descriptor: &Value) -> bool {
    descriptor["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
}

fn platform_of(descriptor: &Value) -> String {
    let platform = &descriptor["platform"];
    format!(
        "{}/{}",
        platform["os"].as_str().unwrap_or("unknown"),
        platform["architecture"].as_str().unwrap_or("unknown")
    )
}

/// Assembles the OCI index (images in platform order, then attestations, whatever the
/// order they were built or given in) and pushes it under the version tag.
async fn push_index(
    plan: &PublishPlan,
    registry: &Registry,
    mut descriptors: Vec<Value>,
) -> anyhow::Result<String> {
    descriptors.sort_by_key(|descriptor| (is_attestation(descriptor), platform_of(descriptor)));
    let index = Bytes::from(serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": descriptors,
        "annotations": annotations(plan),
    }))?);
    let index_digest = oci::sha256_digest(&index);
    if let Some((_, previous)) = registry.manifest(&plan.version_tag).await? {
        if previous != index_digest {
            eprintln!("    note: {} pointed at {previous}; it now names the new build", plan.version_tag);
        }
    }
    registry.push_manifest(&plan.version_tag, &index, oci::OCI_INDEX).await?;
    eprintln!("==> pushed index {index_digest} as {}:{}", plan.repository, plan.version_tag);
    Ok(index_digest)
}

fn annotations(plan: &PublishPlan) -> Value {
    let arg = |name: &str| plan.build_args.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
    json!({
        "org.opencontainers.image.title": "stigmer-agent-runner",
        "org.opencontainers.image.version": plan.version.to_string(),
        "org.opencontainers.image.revision": arg("REVISION"),
        "org.opencontainers.image.created": arg("CREATED"),
        "org.opencontainers.image.source": "https://github.com/stigmer/stigmer",
    })
}

/// An OCI image manifest; serde_json orders keys, so equal inputs give equal bytes.
fn image_manifest(config_digest: &str, config_size: usize, layers: &[Layer]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| json!({ "mediaType": oci::OCI_LAYER_GZIP, "digest": l.digest, "size": l.size }))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": { "mediaType": oci::OCI_CONFIG, "digest": config_digest, "size": config_size },
        "layers": layers,
    }))
    .expect("a JSON value serializes")
}

struct SavedImage {
    config: Bytes,
    config_json: Value,
    layers: Vec<Layer>,
}

struct Layer {
    digest: String,
    size: u64,
    path: PathBuf,
}

/// `docker save`s an image and turns each layer into a reproducible gzip blob, cached
/// under `target/oci-layers/` by the layer's diff id: an unchanged layer compresses
/// to the same bytes, so a re-push finds every blob already in the registry.
fn save_image(sh: &Shell, engine: &Engine, id: &str) -> anyhow::Result<SavedImage> {
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("image.tar");
    let program = engine.program();
    cmd!(sh, "{program} save --output {archive} {id}").quiet().run().context("saving the built image")?;
    let unpacked = dir.path().join("unpacked");
    tar::Archive::new(BufReader::new(std::fs::File::open(&archive)?))
        .unpack(&unpacked)
        .context("unpacking the saved image")?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json"))?)?;
    let entry = &manifest[0];
    let config = Bytes::from(std::fs::read(
        unpacked.join(entry["Config"].as_str().context("no Config in manifest.json")?),
    )?);
    let config_json: Value = serde_json::from_slice(&config)?;
    let diff_ids: Vec<&str> = config_json["rootfs"]["diff_ids"]
        .as_array()
        .context("the image config has no rootfs.diff_ids")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let layer_paths: Vec<&str> = entry["Layers"]
        .as_array()
        .context("no Layers in manifest.json")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if diff_ids.len() != layer_paths.len() {
        bail!("the saved image has {} layers but its config lists {}", layer_paths.len(), diff_ids.len());
    }
    let cache = crate::project::root().join("target/oci-layers");
    std::fs::create_dir_all(&cache)?;
    let mut layers = Vec::new();
    for (diff_id, path) in diff_ids.iter().zip(layer_paths) {
        let blob = cache.join(format!("{}.tar.gz", diff_id.trim_start_matches("sha256:")));
        if !blob.exists() {
            gzip_reproducibly(&unpacked.join(path), &blob)?;
        }
        let data = std::fs::read(&blob)?;
        layers.push(Layer { digest: oci::sha256_digest(&data), size: data.len() as u64, path: blob });
    }
    Ok(SavedImage { config, config_json, layers })
}

/// gzip with no timestamp or file name in the header and a fixed level, into a
/// temporary file renamed into place: the cache never holds half a blob, and two
/// publishes compressing the same layer at once cannot interleave their writes.
fn gzip_reproducibly(from: &Path, to: &Path) -> anyhow::Result<()> {
    let partial = tempfile::NamedTempFile::new_in(to.parent().context("a cache path has a parent")?)?;
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(partial, flate2::Compression::new(6));
    std::io::copy(&mut std::fs::File::open(from)?, &mut encoder)?;
    let mut partial = encoder.finish()?;
    partial.flush()?;
    partial.persist(to).context("moving a compressed layer into the cache")?;
    Ok(())
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> semver::Version {
        semver::Version::parse(text).unwrap()
    }

    #[test]
    fn a_release_moves_latest_and_the_minor_and_major_aliases() {
        assert_eq!(alias_tags(&version("1.3.0"), false), ["latest", "v1.3", "v1"]);
    }

    #[test]
    fn a_pre_release_or_no_latest_moves_no_alias() {
        assert!(alias_tags(&version("1.3.0-rc.1"), false).is_empty());
        assert!(alias_tags(&version("1.3.0"), true).is_empty());
    }

    fn plan() -> PublishPlan {
        PublishPlan {
            repository: "ghcr.io/stigmer/agent-runner".parse().unwrap(),
            version: version("1.3.0"),
            platforms: Platform::ALL.to_vec(),
            builder: Builder::Buildx,
            base_image: "python:3.11-slim".into(),
            build_args: vec![("BASE_IMAGE", "python:3.11-slim".into()), ("VERSION", "1.3.0".into())],
            version_tag: "v1.3.0".into(),
            aliases: alias_tags(&version("1.3.0"), false),
            context: "agent-runner".into(),
            credentials_source: "GITHUB_TOKEN".into(),
            cache_from: vec!["type=gha".into()],
            cache_to: vec!["type=gha,mode=max".into()],
            sbom_generator: None,
        }
    }

    #[test]
    fn the_buildx_command_pushes_one_multi_platform_build_with_attestations() {
        let args = plan().buildx_args(&PublishMode::Index, Path::new("/tmp/meta.json"));
        insta::assert_snapshot!(args.join(" "), @"buildx build --platform linux/amd64,linux/arm64 --push --tag ghcr.io/stigmer/agent-runner:v1.3.0 --metadata-file /tmp/meta.json --provenance=mode=max --sbom=true --build-arg BASE_IMAGE=python:3.11-slim --build-arg VERSION=1.3.0 --cache-from type=gha --cache-to type=gha,mode=max agent-runner");
    }

    #[test]
    fn a_given_sbom_generator_replaces_buildkits_default_scanner() {
        let plan = PublishPlan { sbom_generator: Some("127.0.0.1:5000/sbom-scanner:test".into()), ..plan() };
        let args = plan.buildx_args(&PublishMode::Index, Path::new("/tmp/meta.json"));
        assert!(args.contains(&"--attest=type=sbom,generator=127.0.0.1:5000/sbom-scanner:test".to_owned()));
        assert!(!args.contains(&"--sbom=true".to_owned()), "{args:?}");
    }

    #[test]
    fn the_dry_run_plan_names_every_tag_in_order() {
        insta::assert_snapshot!(plan().describe(&Steps::default()));
    }

    #[test]
    fn a_by_digest_buildx_build_pushes_without_a_tag() {
        let plan = PublishPlan { platforms: vec![Platform::LinuxArm64], ..plan() };
        let args = plan.buildx_args(&PublishMode::ByDigest, Path::new("/tmp/meta.json"));
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

    #[test]
    fn the_index_lists_platforms_in_order_and_attestations_last() {
        let attestation = json!({
            "digest": "sha256:att", "platform": { "architecture": "unknown", "os": "unknown" },
            "annotations": { "vnd.docker.reference.type": "attestation-manifest" },
        });
        let arm64 = manifest_descriptor(
            b"arm",
            oci::OCI_MANIFEST,
            &json!({ "architecture": "arm64", "os": "linux" }),
        );
        let amd64 = manifest_descriptor(
            b"amd",
            oci::OCI_MANIFEST,
            &json!({ "architecture": "amd64", "os": "linux" }),
        );
        let mut descriptors = [attestation, arm64, amd64];
        descriptors.sort_by_key(|descriptor| (is_attestation(descriptor), platform_of(descriptor)));
        let order: Vec<String> = descriptors.iter().map(platform_of).collect();
        assert_eq!(order, ["linux/amd64", "linux/arm64", "unknown/unknown"]);
    }

    #[test]
    fn equal_layers_give_equal_manifest_bytes() {
        let layers = || vec![Layer { digest: "sha256:aa".into(), size: 3, path: PathBuf::new() }];
        assert_eq!(image_manifest("sha256:cc", 10, &layers()), image_manifest("sha256:cc", 10, &layers()));
    }
}
