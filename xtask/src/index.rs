//! OCI index assembly for `image --push` (engine builder) and `image --merge`: index
//! entries spelled one way whoever built the image, entries in platform order with
//! attestations last, our annotations, and the push under the version tag.
//!
//! Architecture invariant: a published version tag never changes. `push_index`
//! refuses to put an index under a version tag that names another digest.

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::{
    oci::{self, is_attestation, Registry},
    publish_plan::PublishPlan,
};

/// An index entry for an image manifest, its platform taken from the image's config:
/// the one spelling both the engine builder and `merge` use, so they agree byte for byte.
pub(crate) fn manifest_descriptor(manifest: &[u8], media_type: &str, config: &Value) -> Value {
    json!({
        "mediaType": media_type,
        "digest": oci::sha256_digest(manifest),
        "size": manifest.len(),
        "platform": { "architecture": config["architecture"], "os": config["os"] },
    })
}

pub(crate) fn platform_of(descriptor: &Value) -> String {
    let platform = &descriptor["platform"];
    format!(
        "{}/{}",
        platform["os"].as_str().unwrap_or("unknown"),
        platform["architecture"].as_str().unwrap_or("unknown")
    )
}

/// The entries of the platform images pushed by digest: each image manifest becomes a
/// descriptor exactly as the engine builder writes one; an index (buildx's image plus
/// attestations) contributes its entries.
pub(crate) async fn merge_entries(
    plan: &PublishPlan,
    registry: &Registry,
    digests: &[String],
) -> anyhow::Result<Vec<Value>> {
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
    eprintln!("==> merging {} into {}:{}", platforms.join(", "), plan.repository, plan.version_tag());
    Ok(descriptors)
}

/// Whether every image and attestation behind `digests` is an entry of `index`: a
/// rerun of the merge job with the digests of the first run (or with the entries a
/// rerun of `--by-digest` printed) names the index that is published already.
pub(crate) async fn holds_all(registry: &Registry, index: &[u8], digests: &[String]) -> anyhow::Result<bool> {
    let index: Value = serde_json::from_slice(index)?;
    let entries: Vec<&str> =
        index["manifests"].as_array().into_iter().flatten().filter_map(|d| d["digest"].as_str()).collect();
    for digest in digests {
        if entries.contains(&digest.as_str()) {
            continue;
        }
        let Some((bytes, _)) = registry.manifest(digest).await? else { return Ok(false) };
        let given: Value = serde_json::from_slice(&bytes)?;
        let Some(inner) = given["manifests"].as_array() else { return Ok(false) };
        if !inner.iter().all(|d| d["digest"].as_str().is_some_and(|inner| entries.contains(&inner))) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The index bytes for `descriptors`: images in platform order, then attestations,
/// whatever the order they were built or given in.
pub(crate) fn assemble(plan: &PublishPlan, mut descriptors: Vec<Value>) -> anyhow::Result<Bytes> {
    descriptors.sort_by_key(|descriptor| (is_attestation(descriptor), platform_of(descriptor)));
    Ok(Bytes::from(serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": descriptors,
        "annotations": annotations(plan),
    }))?))
}

/// Pushes `index` under the version tag, unless that tag names another digest: a
/// published version never changes. The same digest again is a no-op.
pub(crate) async fn push_index(
    plan: &PublishPlan,
    registry: &Registry,
    index: &Bytes,
) -> anyhow::Result<String> {
    let index_digest = oci::sha256_digest(index);
    let tag = plan.version_tag();
    match registry.manifest(&tag).await? {
        Some((_, published)) if published == index_digest => {
            eprintln!("==> {}:{tag} names {index_digest} already", plan.repository);
        }
        Some((_, published)) => bail!(write_once_refusal(plan, &published, &index_digest)),
        None => {
            registry.push_manifest(&tag, index, oci::OCI_INDEX).await?;
            eprintln!("==> pushed index {index_digest} as {}:{tag}", plan.repository);
        }
    }
    Ok(index_digest)
}

/// The refusal of a second digest for a published version, with the way out.
pub(crate) fn write_once_refusal(plan: &PublishPlan, published: &str, new: &str) -> String {
    let next = semver::Version::new(
        plan.release.version.major,
        plan.release.version.minor,
        plan.release.version.patch + 1,
    );
    format!(
        "{}:{} is published as {published}, and this build is {new}: a published version never \
         changes. Nothing was tagged. Cut the next patch instead (`cargo xtask release --bump patch`, v{next})",
        plan.repository,
        plan.version_tag()
    )
}

fn annotations(plan: &PublishPlan) -> Value {
    let arg = |name: &str| plan.build_args.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
    json!({
        "org.opencontainers.image.title": "stigmer-agent-runner",
        "org.opencontainers.image.version": plan.release.version.to_string(),
        "org.opencontainers.image.revision": arg("REVISION"),
        "org.opencontainers.image.created": arg("CREATED"),
        "org.opencontainers.image.source": "https://github.com/stigmer/stigmer",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The index we publish, byte for byte: its digest is what the CLI pins and a rerun
    /// must reproduce, so any change to its spelling shows here first.
    #[test]
    fn the_assembled_index_bytes() {
        let repository: oci::Repository = "ghcr.io/stigmer/agent-runner".parse().unwrap();
        let version = semver::Version::new(1, 2, 3);
        let release = crate::plan::compute(
            &version,
            crate::plan::Kind::Release,
            false,
            &repository,
            &crate::plan::World::default(),
        );
        let plan = PublishPlan {
            release,
            repository,
            platforms: crate::platform::Platform::ALL.to_vec(),
            builder: crate::publish_plan::Builder::Engine,
            builder_reason: String::new(),
            base_image: "python:3.11-slim".into(),
            build_args: vec![
                ("REVISION", "0123456789abcdef0123456789abcdef01234567".to_owned()),
                ("CREATED", "2026-12-02T00:00:00Z".to_owned()),
            ],
            context: "agent-runner".into(),
            credentials_source: "anonymous".into(),
            explicit_auth: None,
            sbom_generator: None,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
        };
        let config = |arch: &str| json!({ "architecture": arch, "os": "linux" });
        let attestation: Value = serde_json::from_str(
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "digest":"sha256:b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","size":840,
                "annotations":{"vnd.docker.reference.digest":"sha256:7d865e959b2466918c9863afca942d0fb89d7c9ac0c99bafc3749504ded97730",
                               "vnd.docker.reference.type":"attestation-manifest"},
                "platform":{"architecture":"unknown","os":"unknown"}}"#,
        )
        .unwrap();
        let descriptors = vec![
            attestation,
            manifest_descriptor(b"arm64 manifest", oci::OCI_MANIFEST, &config("arm64")),
            manifest_descriptor(b"amd64 manifest", oci::DOCKER_MANIFEST, &config("amd64")),
        ];
        let bytes = assemble(&plan, descriptors).unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        insta::assert_snapshot!(format!("{}\n{text}", oci::sha256_digest(&bytes)));
    }
}
