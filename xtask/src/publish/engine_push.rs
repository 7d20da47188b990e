//! The engine builder of `image --push`: each platform built through the engine
//! (`docker` or `podman`), `docker save`d, its layers gzipped reproducibly and cached
//! by diff id in `target/oci-layers/`, every blob pushed only when the registry lacks
//! it, and the image manifest pushed by digest. What it returns is the index entry;
//! assembling the index is `index.rs`'s job. Works on any engine, no BuildKit needed.

use std::{
    io::{BufReader, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use bytes::Bytes;
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
        no_cache: false,
    };
    let id = engine.build_with(sh, &request, steps.dependency_path)?;
    let image = save_image(sh, engine, &id)?;
    let architecture = image.config_json.architecture().to_string();
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
    let config_digest = sha256_digest(&image.config);
    registry.push_blob_if_missing(&config_digest, image.config.clone()).await?;
    let manifest = Bytes::from(image_manifest(&config_digest, image.config.len(), &image.layers));
    let descriptor = manifest_descriptor(&manifest, oci::OCI_MANIFEST, &image.config_json);
    let manifest_digest = descriptor.digest().to_string();
    registry.push_by_digest(&manifest, oci::OCI_MANIFEST).await?;
    eprintln!("    manifest {manifest_digest}");
    Ok(descriptor)
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
    let config = Bytes::from(std::fs::read(unpacked.join(&entry.config))?);
    let config_json = document::config(&config, "the saved image's config")?;
    let diff_ids = config_json.rootfs().diff_ids();
    let layer_paths = &entry.layers;
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
        layers.push(Layer { digest: sha256_digest(&data), size: data.len() as u64, path: blob });
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

pub(crate) fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_layers_give_equal_manifest_bytes() {
        let layers = || vec![Layer { digest: "sha256:aa".into(), size: 3, path: PathBuf::new() }];
        assert_eq!(image_manifest("sha256:cc", 10, &layers()), image_manifest("sha256:cc", 10, &layers()));
    }
}
