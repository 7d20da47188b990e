//! The buildx builder of `image --push`: one `docker buildx build` for the plan's
//! platforms with provenance and SBOM attestations into an OCI layout on this machine,
//! which the OCI client then pushes by digest (`push_layout`). buildx never pushes and
//! never tags: what is named, and when, is `tags.rs`'s.
//!
//! buildx reads registries (a private base, a registry cache) with the Docker config's
//! credentials only. Credentials given explicitly (`--password-stdin`, `GITHUB_TOKEN`)
//! reach it through a private `DOCKER_CONFIG` made for the one build, readable by this
//! user only and removed after it; the user's own config is never written.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use oci_client::secrets::RegistryAuth;
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::{
    platform::Platform,
    publish::publish_plan::PublishPlan,
    registry::{
        digest::sha256_digest,
        document::{self, Document},
        oci::Registry,
    },
};

/// What the buildx builder in use can do: its driver, and for the `docker` driver the
/// engine's image store. `docker buildx version` answering says neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// `docker`, `docker-container`, `remote` or `kubernetes`.
    pub(crate) driver: String,
    /// The engine keeps its images in containerd (`docker` info's driver-type
    /// `io.containerd.snapshotter.v1`). Only the `docker` driver depends on it.
    pub(crate) containerd_store: bool,
}

impl Capabilities {
    /// Reads the builder `docker buildx build` would use (`BUILDX_BUILDER`, else the
    /// current one); `Err` says why there is none.
    pub(crate) fn of_current_builder(sh: &Shell) -> Result<Capabilities, String> {
        let config = linked_docker_config(sh, |_| {})
            .map_err(|err| format!("could not make a private Docker config to ask buildx: {err:#}"))?;
        let inspect = cmd!(sh, "docker buildx inspect")
            .env("DOCKER_CONFIG", config.path())
            .quiet()
            .ignore_stderr()
            .read()
            .map_err(|_| {
                "`docker buildx inspect` failed: no buildx plugin, or no builder it can reach".to_owned()
            })?;
        let driver = inspect
            .lines()
            .find_map(|line| line.strip_prefix("Driver:"))
            .map(|driver| driver.trim().to_owned())
            .ok_or_else(|| format!("`docker buildx inspect` names no driver:\n{inspect}"))?;
        let format = "{{json .DriverStatus}}";
        let containerd_store = driver == "docker"
            && cmd!(sh, "docker info --format {format}")
                .env("DOCKER_CONFIG", config.path())
                .quiet()
                .ignore_stderr()
                .read()
                .is_ok_and(|status| status.contains("io.containerd.snapshotter.v1"));
        Ok(Capabilities { driver, containerd_store })
    }

    /// Why this builder cannot make what `args` asks for (attestations and several
    /// platforms into an OCI layout), if it cannot.
    pub(crate) fn cannot(&self) -> Option<String> {
        (self.driver == "docker" && !self.containerd_store).then(|| {
            "buildx's docker driver builds attestations and several platforms into an OCI layout only on an engine \
             with the containerd image store (daemon.json: \"features\": {\"containerd-snapshotter\": true})"
                .to_owned()
        })
    }
}

/// Runs buildx for the plan into an OCI layout on this machine, then pushes the layout
/// by digest with the OCI client (`push_layout`); returns the digest of what it pushed
/// (the index: every platform with its attestations, or with `--by-digest` the one
/// platform's). buildx never pushes: nothing it makes is named by a tag.
pub(crate) async fn build_and_push(
    sh: &Shell,
    plan: &PublishPlan,
    registry: &Registry,
) -> anyhow::Result<String> {
    let layout = build(sh, plan)?;
    push_layout(registry, &layout.path().join("layout")).await
}

/// Runs buildx for the plan into an OCI layout (`layout/` in the directory returned),
/// pushing nothing (a dry run stops here).
pub(crate) fn build(sh: &Shell, plan: &PublishPlan) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let layout = dir.path().join("layout");
    let args = args(plan, &layout, crate::project::source_date(sh)?.timestamp());
    // Credentials for what the build itself reads or writes (a private base, a registry cache).
    let config = match &plan.explicit_auth {
        Some(auth) => Some(private_docker_config(sh, &plan.repository.registry, auth)?),
        None => None,
    };
    let mut build = cmd!(sh, "docker {args...}");
    if let Some(config) = &config {
        build = build.env("DOCKER_CONFIG", config.path());
    }
    build.run().context("docker buildx build (its output is above)")?;
    Ok(dir)
}

/// The digest of the one image an OCI layout holds (what `push_layout` would push).
pub(crate) fn layout_digest(layout: &Path) -> anyhow::Result<String> {
    let index_json =
        std::fs::read(layout.join("index.json")).context("reading the OCI layout's index.json")?;
    let top = document::index(&index_json, "the OCI layout's index.json")?;
    let [top] = top.manifests().as_slice() else {
        bail!("buildx's OCI layout holds {} images, not one", top.manifests().len());
    };
    Ok(top.digest().to_string())
}

/// Each platform image an OCI layout holds (not the attestations): its `os/arch`, its
/// manifest and its config, as `push_layout` would push them.
pub(crate) fn layout_images(layout: &Path) -> anyhow::Result<Vec<(String, Bytes, Bytes)>> {
    let read = |digest: &str| -> anyhow::Result<Bytes> {
        let hex =
            digest.strip_prefix("sha256:").with_context(|| format!("{digest} is not a sha256 digest"))?;
        let path = layout.join("blobs/sha256").join(hex);
        Ok(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?.into())
    };
    let digest = layout_digest(layout)?;
    let top = read(&digest)?;
    // One platform without attestations is a manifest alone; anything else an index.
    let manifests: Vec<String> = match Document::parse(&top, &digest)? {
        Document::Image(_) => vec![digest],
        Document::Index(index) => (index.manifests().iter())
            .filter(|entry| !document::is_attestation(entry))
            .map(|entry| entry.digest().to_string())
            .collect(),
    };
    let mut images = Vec::new();
    for digest in manifests {
        let manifest = read(&digest)?;
        let config = read(document::manifest(&manifest, &digest)?.config().digest().as_ref())?;
        let parsed = document::config(&config, &format!("the config of {digest}"))?;
        images.push((format!("{}/{}", parsed.os(), parsed.architecture()), manifest, config));
    }
    Ok(images)
}

/// The BuildKit release of the builder `docker buildx build` would use (`v0.13.2`), as
/// `docker buildx inspect` reports it; `None` when it does not say.
pub(crate) fn buildkit_version(sh: &Shell) -> Option<String> {
    let config = linked_docker_config(sh, |_| {}).ok()?;
    let inspect = cmd!(sh, "docker buildx inspect")
        .env("DOCKER_CONFIG", config.path())
        .quiet()
        .ignore_stderr()
        .read()
        .ok()?;
    // "BuildKit version: v0.13.2" (buildx 0.11 and later), "Buildkit: v0.10.6" before.
    inspect.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        matches!(key.trim(), "BuildKit version" | "Buildkit").then(|| value.trim().to_owned())
    })
}

/// The `docker buildx build` arguments for this plan: an OCI layout at `layout`, whose
/// platform manifests are a function of the commit: `SOURCE_DATE_EPOCH` (the source
/// date, `source_date_epoch`) sets the configs' and history's times, and
/// `rewrite-timestamp` (BuildKit 0.13) brings every newer file time in the build's own
/// layers down to it. (The index is not: BuildKit's provenance records each build.)
pub(crate) fn args(plan: &PublishPlan, layout: &Path, source_date_epoch: i64) -> Vec<String> {
    let platforms: Vec<String> = plan.platforms.iter().map(Platform::to_string).collect();
    let mut args: Vec<String> = vec![
        "buildx".into(),
        "build".into(),
        "--platform".into(),
        platforms.join(","),
        "--output".into(),
        format!("type=oci,dest={},tar=false,rewrite-timestamp=true", layout.display()),
        "--build-arg".into(),
        format!("SOURCE_DATE_EPOCH={source_date_epoch}"),
        "--provenance=mode=max".into(),
    ];
    match &plan.sbom_generator {
        Some(generator) => args.extend(["--attest".into(), format!("type=sbom,generator={generator}")]),
        None => args.push("--sbom=true".into()),
    }
    for (name, value) in &plan.build_args {
        args.extend(["--build-arg".into(), format!("{name}={value}")]);
    }
    if plan.no_cache {
        args.push("--no-cache".into());
    }
    for cache in &plan.cache_from {
        args.extend(["--cache-from".into(), cache.clone()]);
    }
    for cache in &plan.cache_to {
        args.extend(["--cache-to".into(), cache.clone()]);
    }
    args.push(plan.context.display().to_string());
    args
}

/// Pushes the one image (an index or a manifest) an OCI layout holds, by digest: every
/// blob the registry lacks, each manifest after what it names, the top last. Returns
/// its digest.
async fn push_layout(registry: &Registry, layout: &Path) -> anyhow::Result<String> {
    let read = |digest: &str| -> anyhow::Result<bytes::Bytes> {
        let hex =
            digest.strip_prefix("sha256:").with_context(|| format!("{digest} is not a sha256 digest"))?;
        let path = layout.join("blobs/sha256").join(hex);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if sha256_digest(&bytes) != digest {
            bail!("{} does not hash to its name", path.display());
        }
        Ok(bytes.into())
    };
    let index_json =
        std::fs::read(layout.join("index.json")).context("reading the OCI layout's index.json")?;
    let top = document::index(&index_json, "the OCI layout's index.json")?;
    let [top] = top.manifests().as_slice() else {
        bail!("buildx's OCI layout holds {} images, not one", top.manifests().len());
    };
    // Depth first: a manifest is pushed after the blobs and manifests it names.
    let mut pending = vec![(top.digest().to_string(), top.media_type().to_string(), false)];
    while let Some((digest, media_type, children_pushed)) = pending.pop() {
        let bytes = read(&digest)?;
        if children_pushed {
            registry.push_by_digest(&bytes, &media_type).await?;
            continue;
        }
        pending.push((digest.clone(), media_type, true));
        match Document::parse(&bytes, &digest)? {
            Document::Index(index) => pending.extend(
                index.manifests().iter().map(|d| (d.digest().to_string(), d.media_type().to_string(), false)),
            ),
            Document::Image(manifest) => {
                for blob in std::iter::once(manifest.config()).chain(manifest.layers()) {
                    let blob_digest = blob.digest().to_string();
                    registry.push_blob_if_missing(&blob_digest, read(&blob_digest)?).await?;
                }
            }
        }
    }
    Ok(top.digest().to_string())
}

/// A Docker config directory for one build: the user's config with `auth` for
/// `registry` in its `auths` (and no credential store or helper that would win over
/// it), and every other entry of the user's config directory (`cli-plugins`, `buildx`
/// with its builders, `contexts`) linked in, so the same buildx and builder run.
pub(crate) fn private_docker_config(
    sh: &Shell,
    registry: &str,
    auth: &RegistryAuth,
) -> anyhow::Result<tempfile::TempDir> {
    linked_docker_config(sh, |config| {
        let entry = match auth {
            RegistryAuth::Basic(user, password) => json!({
                "auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            }),
            RegistryAuth::Bearer(token) => json!({ "identitytoken": token }),
            RegistryAuth::Anonymous => json!({}),
        };
        config["auths"][registry] = entry;
        if let Some(helpers) = config["credHelpers"].as_object_mut() {
            helpers.remove(registry);
        }
        if let Some(object) = config.as_object_mut() {
            object.remove("credsStore");
        }
    })
}

/// A private Docker config directory: the user's `config.json` as `edit` leaves it
/// (written 0600), every other entry of the user's directory linked in. buildx then
/// creates its state (`buildx/`) here unless the user has one: a probe or a build never
/// adds anything to the user's own config directory.
fn linked_docker_config(sh: &Shell, edit: impl FnOnce(&mut Value)) -> anyhow::Result<tempfile::TempDir> {
    let user_dir = match sh.var("DOCKER_CONFIG") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => PathBuf::from(sh.var("HOME").unwrap_or_default()).join(".docker"),
    };
    // tempfile makes the directory 0700: no other user can read what goes in it.
    let dir = tempfile::Builder::new().prefix("xtask-docker-config-").tempdir()?;
    let mut config: Value = std::fs::read_to_string(user_dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| json!({}));
    if let Ok(entries) = std::fs::read_dir(&user_dir) {
        for entry in entries.flatten() {
            if entry.file_name() != "config.json" {
                std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name()))
                    .context("linking the Docker config's plugins and builders")?;
            }
        }
    }
    edit(&mut config);
    let path = dir.path().join("config.json");
    {
        use std::{io::Write, os::unix::fs::OpenOptionsExt};
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        file.write_all(serde_json::to_string(&config)?.as_bytes())?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` as a blob of the layout at `dir`; returns its digest.
    fn blob(dir: &Path, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        digest
    }

    fn descriptor(media_type: &str, digest: &str, size: usize, extra: Value) -> Value {
        let mut descriptor = json!({ "mediaType": media_type, "digest": digest, "size": size });
        descriptor.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        descriptor
    }

    /// The layout BuildKit writes for one platform with attestations: index.json naming
    /// an index of the image and its attestation manifest. Only the image is read back.
    #[test]
    fn the_platform_images_of_a_layout_leave_out_its_attestations() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path();
        let manifest_of = |config: &[u8], arch: &str| {
            let config_digest = blob(layout, config);
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptor("application/vnd.oci.image.config.v1+json", &config_digest, config.len(), json!({})),
                "layers": [],
            }))
            .unwrap();
            let platform = json!({ "platform": { "os": if arch == "unknown" { "unknown" } else { "linux" }, "architecture": arch } });
            let digest = blob(layout, &manifest);
            (manifest, descriptor("application/vnd.oci.image.manifest.v1+json", &digest, 0, platform))
        };
        let config = br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let (image, image_entry) = manifest_of(config, "arm64");
        let (_, attestation_entry) = manifest_of(b"{}", "unknown");
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [image_entry, attestation_entry],
        }))
        .unwrap();
        let index_digest = blob(layout, &index);
        let top =
            descriptor("application/vnd.oci.image.index.v1+json", &index_digest, index.len(), json!({}));
        std::fs::write(
            layout.join("index.json"),
            serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": [top] })).unwrap(),
        )
        .unwrap();

        let images = layout_images(layout).unwrap();
        assert_eq!(images.len(), 1, "the attestation was taken for an image");
        let (platform, manifest, read_config) = &images[0];
        assert_eq!(
            (platform.as_str(), &manifest[..], &read_config[..]),
            ("linux/arm64", &image[..], &config[..])
        );
    }
}
