//! The engine builder of `image --push`: each platform built through the engine
//! (`docker` or `podman`), `docker save`d, its layers gzipped reproducibly and cached
//! by diff id in `oci-layers/` of cargo's target directory, every blob pushed only when the registry lacks
//! it, and the image manifest pushed by digest. What it returns is the index entry;
//! assembling the index is `index.rs`'s job. Works on any engine, no BuildKit needed.
//!
//! What it pushes is a function of the commit, not of the build (`reproducible_layer`,
//! `reproducible_config`): the engine stamps its own layers with this machine's user
//! names and its configs with the build's times, containers and parent images. Two
//! builds of one commit on one base push the same platform manifest.

use std::{
    io::{BufReader, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::json;
use xshell::{cmd, Shell};

use crate::{
    build::{engine::Engine, prepare::BuildRequest},
    human::human_bytes,
    platform::Platform,
    publish::publish_plan::{PublishPlan, Steps},
    registry::{
        digest::sha256_digest,
        document::{self, manifest_descriptor, Descriptor, ImageConfiguration},
        oci::{self, Registry},
    },
};

/// Builds one platform through the engine and pushes its blobs and manifest by
/// digest; returns the manifest's descriptor for the index.
pub(crate) async fn push_platform(
    sh: &Shell,
    engine: &Engine,
    plan: &PublishPlan,
    steps: &Steps,
    registry: &Registry,
    platform: Platform,
) -> anyhow::Result<Descriptor> {
    build_platform(sh, engine, plan, steps, platform)?.push(plan, registry).await
}

/// One platform built and saved, its manifest made: what a push would send.
pub(crate) struct BuiltPlatform {
    platform: Platform,
    image: SavedImage,
    manifest: Bytes,
    pub(crate) descriptor: Descriptor,
}

/// Builds one platform through the engine and makes its manifest, pushing nothing (a
/// dry run stops here).
pub(crate) fn build_platform(
    sh: &Shell,
    engine: &Engine,
    plan: &PublishPlan,
    steps: &Steps,
    platform: Platform,
) -> anyhow::Result<BuiltPlatform> {
    eprintln!("==> {platform}: building with {}", engine.program());
    let request = BuildRequest {
        context: &plan.context,
        platform,
        tags: &[],
        labels: &[],
        build_args: &plan.build_args,
        // The engine keeps one platform per tag: pull the base for this platform
        // now, or a base cached for another platform would be reused silently.
        pull: true,
        no_cache: plan.no_cache,
    };
    let id = engine.build_with(sh, &request, steps.dependency_path)?;
    // The base's layers are pushed as the engine has them; only the build's own are
    // made reproducible. The base tag names this platform's base now: --pull just read
    // it. Not in the engine, it was not built from (a `FROM scratch` Dockerfile).
    let base = plan.base_image.as_deref().context("a build needs a base image: give --base-image")?;
    let base = engine.inspect(sh, base)?;
    let base_layers = base.as_ref().map(|base| base.layers.clone()).unwrap_or_default();
    let times = Times {
        source_date: crate::project::source_date(sh)?,
        base_created: base.and_then(|base| base.created),
    };
    let image = save_image(sh, engine, &id, &base_layers, times)?;
    let architecture = image.config_json.architecture().to_string();
    if architecture != platform.arch() {
        bail!("the {platform} build produced an image for {architecture}; the engine reused another platform's base");
    }
    let config_digest = sha256_digest(&image.config);
    let manifest = Bytes::from(image_manifest(&config_digest, image.config.len(), &image.layers));
    let descriptor = manifest_descriptor(&manifest, oci::OCI_MANIFEST, &image.config_json);
    Ok(BuiltPlatform { platform, image, manifest, descriptor })
}

impl BuiltPlatform {
    /// The image manifest, as a push would send it.
    pub(crate) fn manifest(&self) -> &Bytes {
        &self.manifest
    }

    /// The config, made reproducible, as a push would send it.
    pub(crate) fn config(&self) -> &Bytes {
        &self.image.config
    }

    /// Pushes every blob the registry lacks, then the manifest, by digest.
    async fn push(self, plan: &PublishPlan, registry: &Registry) -> anyhow::Result<Descriptor> {
        let BuiltPlatform { platform, image, manifest, descriptor } = self;
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
        registry.push_blob_if_missing(&sha256_digest(&image.config), image.config.clone()).await?;
        registry.push_by_digest(&manifest, oci::OCI_MANIFEST).await?;
        eprintln!("    manifest {}", descriptor.digest());
        Ok(descriptor)
    }
}

/// An OCI image manifest, keys sorted (`document::to_bytes`): equal inputs give equal bytes.
fn image_manifest(config_digest: &str, config_size: usize, layers: &[Layer]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| json!({ "mediaType": oci::OCI_LAYER_GZIP, "digest": l.digest, "size": l.size }))
        .collect();
    document::to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": { "mediaType": oci::OCI_CONFIG, "digest": config_digest, "size": config_size },
        "layers": layers,
    }))
}

/// The times a build's config is rewritten with: the source date, and when the base
/// was made (what is later is this build's).
#[derive(Clone, Copy)]
struct Times {
    source_date: DateTime<Utc>,
    base_created: Option<DateTime<Utc>>,
}

struct SavedImage {
    config: Bytes,
    config_json: ImageConfiguration,
    layers: Vec<Layer>,
}

struct Layer {
    digest: String,
    size: u64,
    path: PathBuf,
}

/// `docker save`s an image and turns each layer into a reproducible gzip blob, cached
/// under `oci-layers/` of cargo's target directory by the layer's diff id: an unchanged layer compresses
/// to the same bytes, so a re-push finds every blob already in the registry. The layers
/// after `base_layers` (when the image starts with them), and the config, are rewritten
/// as of `source_date`.
fn save_image(
    sh: &Shell,
    engine: &Engine,
    id: &str,
    base_layers: &[String],
    times: Times,
) -> anyhow::Result<SavedImage> {
    let source_date = times.source_date;
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("image.tar");
    let program = engine.program();
    cmd!(sh, "{program} save --output {archive} {id}").quiet().run().context("saving the built image")?;
    let unpacked = dir.path().join("unpacked");
    tar::Archive::new(BufReader::new(std::fs::File::open(&archive)?))
        .unpack(&unpacked)
        .context("unpacking the saved image")?;
    // `docker save`'s own manifest.json (not an OCI document): one entry per image.
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct SavedEntry {
        config: String,
        layers: Vec<String>,
    }
    let entries: Vec<SavedEntry> = serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json"))?)
        .context("reading the saved image's manifest.json")?;
    let entry = entries.first().context("the saved image's manifest.json lists no image")?;
    let saved_config = std::fs::read(unpacked.join(&entry.config))?;
    let diff_ids = document::config(&saved_config, "the saved image's config")?.rootfs().diff_ids().clone();
    let layer_paths = &entry.layers;
    if diff_ids.len() != layer_paths.len() {
        bail!("the saved image has {} layers but its config lists {}", layer_paths.len(), diff_ids.len());
    }
    // The image is on the base when it starts with all of the base's layers.
    let on_base = diff_ids.starts_with(base_layers);
    let own_from = if on_base { base_layers.len() } else { 0 };
    let cache = crate::project::target_dir(sh).join("oci-layers");
    std::fs::create_dir_all(&cache)?;
    let mut layers = Vec::new();
    let mut reproducible_diff_ids = Vec::new();
    for (position, (diff_id, path)) in diff_ids.iter().zip(layer_paths).enumerate() {
        let mut layer = unpacked.join(path);
        let mut diff_id = diff_id.clone();
        if position >= own_from {
            let rewritten = unpacked.join(format!("reproducible-{position}.tar"));
            diff_id = reproducible_layer(&layer, &rewritten, source_date)
                .with_context(|| format!("rewriting layer {} reproducibly", position + 1))?;
            layer = rewritten;
        }
        let blob = cache.join(format!("{}.tar.gz", diff_id.trim_start_matches("sha256:")));
        if !blob.exists() {
            gzip_reproducibly(&layer, &blob)?;
        }
        let data = std::fs::read(&blob)?;
        layers.push(Layer { digest: sha256_digest(&data), size: data.len() as u64, path: blob });
        reproducible_diff_ids.push(diff_id);
    }
    let config = Bytes::from(reproducible_config(&saved_config, &reproducible_diff_ids, times)?);
    let config_json = document::config(&config, "the saved image's config, made reproducible")?;
    Ok(SavedImage { config, config_json, layers })
}

/// The engine's layer tar `from` as `to`, a function of its files and `source_date`:
/// every time after the source date becomes it (BuildKit's `rewrite-timestamp` rule),
/// user and group names go (the engine writes this machine's names for the IDs; the IDs
/// stay), and the headers are plain ustar, with PAX records only for what ustar cannot
/// hold. Returns the new layer's diff id.
fn reproducible_layer(from: &Path, to: &Path, source_date: DateTime<Utc>) -> anyhow::Result<String> {
    let limit = u64::try_from(source_date.timestamp()).unwrap_or(0);
    let mut archive = tar::Archive::new(BufReader::new(std::fs::File::open(from)?));
    let mut builder = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(to)?));
    for entry in archive.entries()? {
        let mut entry = entry?;
        // Extended attributes and the like are kept; what is rewritten or derived from
        // the header (names, times, path, size, IDs) is not.
        let derived = ["path", "linkpath", "size", "uid", "gid", "uname", "gname", "mtime", "atime", "ctime"];
        let mut kept = Vec::new();
        if let Some(extensions) = entry.pax_extensions()? {
            for extension in extensions {
                let extension = extension?;
                let key = extension.key().context("a PAX record's key is not UTF-8")?.to_owned();
                if !derived.contains(&key.as_str()) {
                    kept.push((key, extension.value_bytes().to_vec()));
                }
            }
        }
        builder.append_pax_extensions(kept.iter().map(|(key, value)| (key.as_str(), value.as_slice())))?;
        let original = entry.header();
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(original.entry_type());
        header.set_mode(original.mode()?);
        header.set_uid(original.uid()?);
        header.set_gid(original.gid()?);
        header.set_mtime(original.mtime()?.min(limit));
        header.set_size(entry.size());
        if matches!(original.entry_type(), tar::EntryType::Char | tar::EntryType::Block) {
            if let (Some(major), Some(minor)) = (original.device_major()?, original.device_minor()?) {
                header.set_device_major(major)?;
                header.set_device_minor(minor)?;
            }
        }
        let path = entry.path()?.into_owned();
        match entry.link_name()?.map(|target| target.into_owned()) {
            Some(target) => builder.append_link(&mut header, &path, &target)?,
            None => builder.append_data(&mut header, &path, &mut entry)?,
        }
    }
    builder.into_inner()?.flush()?;
    Ok(sha256_digest(&std::fs::read(to)?))
}

/// The engine's image config as a function of the commit: `created` and every history
/// entry after the source date or after the base was made (the build's own steps, built
/// now or taken from the engine's cache) at the source date, as BuildKit does with
/// SOURCE_DATE_EPOCH; the layers' new diff ids; and none of Docker's fields that
/// name the build's containers (`container`, `container_config`), its parent image
/// (`config.Image`) or the engine's version (`docker_version`), which the OCI config does
/// not have and no runtime reads. Keys sorted, as everything we publish.
fn reproducible_config(saved: &[u8], diff_ids: &[String], times: Times) -> anyhow::Result<Vec<u8>> {
    let Times { source_date, base_created } = times;
    let mut config: serde_json::Value =
        serde_json::from_slice(saved).context("parsing the saved image's config")?;
    let object = config.as_object_mut().context("the saved image's config is not a JSON object")?;
    for field in ["container", "container_config", "docker_version"] {
        object.remove(field);
    }
    if let Some(runtime) = object.get_mut("config").and_then(serde_json::Value::as_object_mut) {
        runtime.remove("Image");
    }
    let clamp = |created: &mut serde_json::Value| -> anyhow::Result<()> {
        let Some(text) = created.as_str() else { return Ok(()) };
        let time =
            DateTime::parse_from_rfc3339(text).with_context(|| format!("the config's time {text:?}"))?;
        // A step the engine took from its cache carries that earlier build's time,
        // which may be older than the commit: every time after the base was made is
        // this build's, and is the source date, as BuildKit writes its own history.
        if time > source_date || base_created.is_some_and(|base| time > base) {
            *created = json!(source_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        Ok(())
    };
    if let Some(created) = object.get_mut("created") {
        clamp(created)?;
    }
    for entry in object.get_mut("history").and_then(serde_json::Value::as_array_mut).into_iter().flatten() {
        if let Some(created) = entry.get_mut("created") {
            clamp(created)?;
        }
    }
    object.insert("rootfs".to_owned(), json!({ "type": "layers", "diff_ids": diff_ids }));
    Ok(document::to_bytes(&config))
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

pub(crate) fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// Two legacy builds of one commit: the configs differed in every build time, the
    /// containers and parent images that made them, and (on another machine) the engine's
    /// version. As of the source date they are the same bytes; the base's times stay.
    #[test]
    fn two_builds_configs_are_the_same_as_of_the_source_date() {
        let saved = |built: &str, container: &str, parent: &str, engine: &str| {
            serde_json::to_vec(&json!({
                "architecture": "amd64",
                "os": "linux",
                "created": built,
                "container": container,
                "container_config": { "Hostname": &container[..12], "Image": parent },
                "docker_version": engine,
                "config": { "Env": ["PATH=/usr/bin"], "Image": parent, "User": "1000:1000" },
                "history": [
                    { "created": "2024-01-02T03:04:05.123456789Z", "created_by": "the base" },
                    { "created": built, "created_by": "COPY dir:abc in / " },
                ],
                "rootfs": { "type": "layers", "diff_ids": ["sha256:base", "sha256:engine"] },
            }))
            .unwrap()
        };
        let times = Times { source_date: date("2026-12-04T18:00:00Z"), base_created: None };
        let diff_ids = ["sha256:base".to_owned(), "sha256:ours".to_owned()];
        let first = reproducible_config(
            &saved("2026-12-04T20:26:58.1Z", "8a13ac4853f6aaaa", "sha256:p1", "20.10.24"),
            &diff_ids,
            times,
        )
        .unwrap();
        let second = reproducible_config(
            &saved("2026-12-04T20:28:23.9Z", "0123456789abbbbb", "sha256:p2", "26.1.5"),
            &diff_ids,
            times,
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&first), String::from_utf8_lossy(&second));
        // A step taken from the engine's cache, made by an earlier build before the
        // commit (found by the image rebuild test): its time is the build's too.
        let cached = reproducible_config(
            &saved("2026-12-04T17:59:00Z", "8a13ac4853f6aaaa", "sha256:p1", "20.10.24"),
            &diff_ids,
            Times { base_created: Some(date("2024-01-02T03:04:05.123456789Z")), ..times },
        )
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&cached), String::from_utf8_lossy(&first));
        let config: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(config["created"], "2026-12-04T18:00:00Z");
        assert_eq!(
            config["history"][0]["created"], "2024-01-02T03:04:05.123456789Z",
            "the base's time moved"
        );
        assert_eq!(config["history"][1]["created"], "2026-12-04T18:00:00Z");
        assert_eq!(config["rootfs"]["diff_ids"][1], "sha256:ours");
        assert_eq!(config["config"], json!({ "Env": ["PATH=/usr/bin"], "User": "1000:1000" }));
        for gone in ["container", "container_config", "docker_version"] {
            assert!(config.get(gone).is_none(), "{gone} is still there: {config}");
        }
    }

    /// The engine writes the building machine's name for each owner (`cloudsdk` for UID
    /// 1000 here) and the build's times for what it makes: the rewritten layer has
    /// neither, and keeps the IDs, the modes and the older times.
    #[test]
    fn a_layer_is_the_same_whichever_machine_and_time_made_it() {
        let layer = |user: &str, made: u64| {
            let mut builder = tar::Builder::new(Vec::new());
            for (path, mode, uid, mtime, data) in [
                ("app/", 0o40755, 0, made, &b""[..]),
                ("workspace/", 0o40750, 1000, 315_532_800, &b""[..]),
                ("app/main.py", 0o100644, 0, 315_532_800, &b"print()\n"[..]),
            ] {
                let mut header = tar::Header::new_ustar();
                header.set_entry_type(if data.is_empty() && path.ends_with('/') {
                    tar::EntryType::Directory
                } else {
                    tar::EntryType::Regular
                });
                header.set_mode(mode);
                header.set_uid(uid);
                header.set_gid(uid);
                header.set_username(if uid == 0 { "root" } else { user }).unwrap();
                header.set_mtime(mtime);
                header.set_size(data.len() as u64);
                builder.append_data(&mut header, path, data).unwrap();
            }
            builder.into_inner().unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let rewrite = |name: &str, bytes: Vec<u8>| {
            let (from, to) = (dir.path().join(format!("{name}.tar")), dir.path().join(format!("{name}.out")));
            std::fs::write(&from, bytes).unwrap();
            let diff_id = reproducible_layer(&from, &to, date("2026-12-04T18:00:00Z")).unwrap();
            (diff_id, std::fs::read(&to).unwrap())
        };
        let (first, first_bytes) = rewrite("first", layer("cloudsdk", 1_796_409_250));
        let (second, _) = rewrite("second", layer("runner", 1_796_409_291));
        assert_eq!(first, second, "two builds' layers differ after the rewrite");
        let mut archive = tar::Archive::new(&first_bytes[..]);
        let entries: Vec<(String, u32, u64, u64, String)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                (
                    entry.path().unwrap().display().to_string(),
                    header.mode().unwrap(),
                    header.uid().unwrap(),
                    header.mtime().unwrap(),
                    header.username().unwrap().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let source_date = 1_796_407_200;
        assert_eq!(
            entries,
            [
                ("app/".to_owned(), 0o40755, 0, source_date, String::new()),
                ("workspace/".to_owned(), 0o40750, 1000, 315_532_800, String::new()),
                ("app/main.py".to_owned(), 0o100644, 0, 315_532_800, String::new()),
            ]
        );
    }

    #[test]
    fn equal_layers_give_equal_manifest_bytes() {
        let layers = || vec![Layer { digest: "sha256:aa".into(), size: 3, path: PathBuf::new() }];
        assert_eq!(image_manifest("sha256:cc", 10, &layers()), image_manifest("sha256:cc", 10, &layers()));
    }
}
