//! OCI index assembly for `image --push` (engine builder) and `image --merge`: index
//! entries spelled one way whoever built the image, entries in platform order with
//! attestations last, our annotations, and the push by digest (never a tag: `tags.rs`
//! writes those).

use anyhow::bail;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::{
    publish::publish_plan::PublishPlan,
    registry::{
        document::{self, is_attestation, manifest_descriptor, platform_of, Descriptor, Document},
        oci::{self, Registry},
    },
};

/// The entries of the platform images pushed by digest: each image manifest becomes a
/// descriptor exactly as the engine builder writes one; an index (buildx's image plus
/// attestations) contributes its entries.
pub(crate) async fn merge_entries(
    plan: &PublishPlan,
    registry: &Registry,
    digests: &[String],
) -> anyhow::Result<Vec<Descriptor>> {
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
        let what = format!("{}@{digest}", plan.repository);
        let manifest = match Document::parse(&bytes, &what)? {
            Document::Index(index) => {
                descriptors.extend(index.manifests().iter().cloned());
                continue;
            }
            Document::Image(manifest) => manifest,
        };
        let config = manifest.config();
        let config = registry.pull_blob_checked(config.digest().as_ref(), config.size()).await?;
        let config = document::config(&config, &format!("the config of {what}"))?;
        let media_type = manifest
            .media_type()
            .as_ref()
            .map_or(oci::OCI_MANIFEST.to_owned(), |media_type| media_type.to_string());
        descriptors.push(manifest_descriptor(&bytes, &media_type, &config));
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
    let index = document::index(index, "the published index")?;
    let entries: Vec<String> = index.manifests().iter().map(|d| d.digest().to_string()).collect();
    for digest in digests {
        if entries.contains(digest) {
            continue;
        }
        let Some((bytes, _)) = registry.manifest(digest).await? else { return Ok(false) };
        let Document::Index(given) = Document::parse(&bytes, digest)? else { return Ok(false) };
        if !given.manifests().iter().all(|d| entries.contains(&d.digest().to_string())) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The index bytes for `descriptors`: images in platform order, then attestations,
/// whatever the order they were built or given in.
pub(crate) fn assemble(plan: &PublishPlan, mut descriptors: Vec<Descriptor>) -> Bytes {
    descriptors.sort_by_key(|descriptor| (is_attestation(descriptor), platform_of(descriptor)));
    Bytes::from(document::to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_INDEX,
        "manifests": descriptors,
        "annotations": annotations(plan),
    })))
}

/// Pushes `index` by digest, with no tag (`tags.rs` tags it once it is verified and
/// signed); returns its digest.
pub(crate) async fn push(plan: &PublishPlan, registry: &Registry, index: &Bytes) -> anyhow::Result<String> {
    let digest = registry.push_by_digest(index, oci::OCI_INDEX).await?;
    eprintln!("==> pushed index {}@{digest}", plan.repository);
    Ok(digest)
}

/// Our index annotations. OCI annotation values are strings: a build argument the plan
/// lacks (the bench builds without provenance) is left out, never written as null.
fn annotations(plan: &PublishPlan) -> Value {
    let arg = |name: &str| plan.build_args.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
    let mut annotations = json!({
        "org.opencontainers.image.title": "stigmer-agent-runner",
        "org.opencontainers.image.version": plan.release.version.to_string(),
        "org.opencontainers.image.source": "https://github.com/stigmer/stigmer",
    });
    for (key, arg_name) in
        [("org.opencontainers.image.revision", "REVISION"), ("org.opencontainers.image.created", "CREATED")]
    {
        if let Some(value) = arg(arg_name) {
            annotations[key] = Value::String(value);
        }
    }
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::digest::sha256_digest;

    fn config(arch: &str) -> document::ImageConfiguration {
        let text =
            format!(r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#);
        document::config(text.as_bytes(), "a test config").unwrap()
    }

    fn attestation() -> Descriptor {
        serde_json::from_str(
            r#"{"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "digest":"sha256:b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c","size":840,
                "annotations":{"vnd.docker.reference.digest":"sha256:7d865e959b2466918c9863afca942d0fb89d7c9ac0c99bafc3749504ded97730",
                               "vnd.docker.reference.type":"attestation-manifest"},
                "platform":{"architecture":"unknown","os":"unknown"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn the_index_lists_platforms_in_order_and_attestations_last() {
        let arm64 = manifest_descriptor(b"arm", oci::OCI_MANIFEST, &config("arm64"));
        let amd64 = manifest_descriptor(b"amd", oci::OCI_MANIFEST, &config("amd64"));
        let mut descriptors = [attestation(), arm64, amd64];
        descriptors.sort_by_key(|descriptor| (is_attestation(descriptor), platform_of(descriptor)));
        let order: Vec<String> = descriptors.iter().map(platform_of).collect();
        assert_eq!(order, ["linux/amd64", "linux/arm64", "unknown/unknown"]);
    }

    fn plan(build_args: Vec<(&'static str, String)>) -> PublishPlan {
        let repository: oci::Repository = "ghcr.io/stigmer/agent-runner".parse().unwrap();
        let version = semver::Version::new(1, 2, 3);
        let release = crate::plan::compute(
            &version,
            crate::plan::Kind::Release,
            false,
            &repository,
            None,
            &crate::plan::World::default(),
        );
        PublishPlan {
            release,
            repository,
            platforms: crate::platform::Platform::ALL.to_vec(),
            builder: crate::publish::publish_plan::Builder::Engine,
            builder_reason: String::new(),
            base_image: None,
            build_args,
            context: "agent-runner".into(),
            credentials_source: "anonymous".into(),
            explicit_auth: None,
            sbom_generator: None,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            no_cache: false,
            signer: None,
        }
    }

    /// OCI annotations are strings: a plan without provenance arguments (the bench's)
    /// leaves those out rather than writing null, which no client can read.
    #[test]
    fn an_index_without_provenance_arguments_is_still_valid() {
        let descriptor = manifest_descriptor(b"amd64", oci::OCI_MANIFEST, &config("amd64"));
        let bytes = assemble(&plan(Vec::new()), vec![descriptor]);
        let index = document::index(&bytes, "the index").unwrap();
        let annotations = index.annotations().clone().unwrap();
        assert!(!annotations.contains_key("org.opencontainers.image.revision"), "{annotations:?}");
    }

    /// The index we publish, byte for byte: its digest is what the CLI pins and a rerun
    /// must reproduce, so any change to its spelling shows here first.
    #[test]
    fn the_assembled_index_bytes() {
        let plan = plan(vec![
            ("REVISION", "0123456789abcdef0123456789abcdef01234567".to_owned()),
            ("CREATED", "2026-12-02T00:00:00Z".to_owned()),
        ]);
        let descriptors = vec![
            attestation(),
            manifest_descriptor(b"arm64 manifest", oci::OCI_MANIFEST, &config("arm64")),
            manifest_descriptor(b"amd64 manifest", oci::DOCKER_MANIFEST, &config("amd64")),
        ];
        let bytes = assemble(&plan, descriptors);
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        insta::assert_snapshot!(format!("{}\n{text}", sha256_digest(&bytes)));
    }
}
