//! `cargo xtask image --push`: publishes the agent-runner for several platforms.
//!
//! A `PublishPlan` is computed first (`--dry-run` prints it). Then a builder produces
//! an index under `vX.Y.Z`: `buildx` in one multi-platform build (GitHub's runners), or
//! `engine` (our machines, Podman): each platform built through the engine, saved,
//! its layers gzipped reproducibly, every blob pushed only if the registry lacks it,
//! each manifest pushed by digest and the OCI index assembled here. Both then share
//! the ending: verify the index, and only then copy its exact bytes to the aliases.
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
    verify,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builder {
    Buildx,
    Engine,
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
    pub(crate) fn describe(&self) -> String {
        let kind = if self.version.pre.is_empty() { "release" } else { "pre-release: no alias moves" };
        let builder = match self.builder {
            Builder::Buildx => "buildx (one multi-platform build, attestations on)",
            Builder::Engine => "engine (per-platform builds, index assembled with the OCI client)",
        };
        let platforms: Vec<String> = self.platforms.iter().map(Platform::to_string).collect();
        let mut out = String::from("plan: publish the agent-runner image\n");
        out += &format!("  repository   {}\n", self.repository);
        out += &format!("  version      {} ({kind})\n", self.version_tag);
        out += &format!("  platforms    {}\n", platforms.join(", "));
        out += &format!("  builder      {builder}\n");
        out += &format!("  base image   {}\n", self.base_image);
        out += &format!("  credentials  {}\n", self.credentials_source);
        out += "steps:\n";
        out += &format!(
            "  1. build {} and push it as {}:{}\n",
            platforms.join(" and "),
            self.repository,
            self.version_tag
        );
        out += &format!("  2. verify {}:{} with the OCI client\n", self.repository, self.version_tag);
        match self.aliases.as_slice() {
            [] => out += "  3. move no alias tag\n",
            aliases => out += &format!("  3. then point {} at the verified digest\n", aliases.join(", ")),
        }
        out
    }

    /// The `docker buildx build` arguments for this plan.
    pub(crate) fn buildx_args(&self, metadata_file: &Path) -> Vec<String> {
        let platforms: Vec<String> = self.platforms.iter().map(Platform::to_string).collect();
        let mut args: Vec<String> = vec![
            "buildx".into(),
            "build".into(),
            "--platform".into(),
            platforms.join(","),
            "--push".into(),
            "--tag".into(),
            format!("{}:{}", self.repository, self.version_tag),
            "--metadata-file".into(),
            metadata_file.display().to_string(),
            "--provenance=mode=max".into(),
            "--sbom=true".into(),
        ];
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

/// Runs the plan: builder, then verification, then aliases.
pub(crate) async fn publish(sh: &Shell, plan: &PublishPlan, registry: &Registry) -> anyhow::Result<()> {
    let started = Instant::now();
    registry.check_credentials().await.with_context(|| format!("checking access to {}", plan.repository))?;
    let index_digest = match plan.builder {
        Builder::Engine => publish_with_engine(sh, plan, registry).await?,
        Builder::Buildx => publish_with_buildx(sh, plan)?,
    };
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
    let (index_bytes, _) = registry.manifest(&index_digest).await?.context("the verified index vanished")?;
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
    let misplaced = verify::tags_elsewhere(registry, &plan.aliases, &index_digest).await?;
    if !misplaced.is_empty() {
        bail!("after moving the aliases: {}", misplaced.join("; "));
    }

    eprintln!("\n==> published {}@{index_digest}", plan.repository);
    let mut tags = vec![plan.version_tag.clone()];
    tags.extend(plan.aliases.iter().cloned());
    eprintln!("  tags               {}", tags.join(", "));
    eprintln!("  blob bytes uploaded {}", registry.uploaded_bytes());
    eprintln!("  registry requests  {}", registry.requests());
    eprintln!("  time               {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn publish_with_buildx(sh: &Shell, plan: &PublishPlan) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let metadata_file = dir.path().join("metadata.json");
    let args = plan.buildx_args(&metadata_file);
    cmd!(sh, "docker {args...}").run().context("docker buildx build (its output is above)")?;
    let metadata: Value = serde_json::from_str(&std::fs::read_to_string(&metadata_file)?)?;
    metadata["containerimage.digest"]
        .as_str()
        .map(str::to_owned)
        .context("buildx's metadata file has no containerimage.digest")
}

async fn publish_with_engine(sh: &Shell, plan: &PublishPlan, registry: &Registry) -> anyhow::Result<String> {
    let engine = Engine::connect(sh)?;
    let mut descriptors = Vec::new();
    for &platform in &plan.platforms {
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
        let id = engine.build(sh, &request)?;
        let image = save_image(sh, &engine, &id)?;
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
        let manifest_digest = oci::sha256_digest(&manifest);
        registry.push_manifest(&manifest_digest, &manifest, oci::OCI_MANIFEST).await?;
        eprintln!("    manifest {manifest_digest}");
        descriptors.push(json!({
            "mediaType": oci::OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": platform.arch(), "os": "linux" },
        }));
    }
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
        }
    }

    #[test]
    fn the_buildx_command_pushes_one_multi_platform_build_with_attestations() {
        let args = plan().buildx_args(Path::new("/tmp/meta.json"));
        insta::assert_snapshot!(args.join(" "), @"buildx build --platform linux/amd64,linux/arm64 --push --tag ghcr.io/stigmer/agent-runner:v1.3.0 --metadata-file /tmp/meta.json --provenance=mode=max --sbom=true --build-arg BASE_IMAGE=python:3.11-slim --build-arg VERSION=1.3.0 --cache-from type=gha --cache-to type=gha,mode=max agent-runner");
    }

    #[test]
    fn the_dry_run_plan_names_every_tag_in_order() {
        insta::assert_snapshot!(plan().describe());
    }

    #[test]
    fn equal_layers_give_equal_manifest_bytes() {
        let layers = || vec![Layer { digest: "sha256:aa".into(), size: 3, path: PathBuf::new() }];
        assert_eq!(image_manifest("sha256:cc", 10, &layers()), image_manifest("sha256:cc", 10, &layers()));
    }
}
