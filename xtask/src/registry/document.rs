//! The OCI documents xtask reads and writes, typed (`oci-spec`): an index (an OCI image
//! index or a Docker manifest list), an image manifest, the descriptors in them, and an
//! image config. A document that lacks a required field fails to parse, naming what it
//! is, instead of being read as empty; what an attestation entry is, and which platform
//! an entry is for, are said here once.
//!
//! Documents we publish are serialized through `serde_json::Value`, whose keys are
//! sorted: the same content is the same bytes, so the same digest, whatever the order
//! of a struct's fields (the snapshot `the_assembled_index_bytes` holds an index).

use anyhow::Context;
use oci_spec::image::{Arch, MediaType, Os, Platform};
pub(crate) use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

/// A document as a registry serves it under a tag or a digest.
// One lives for the time of one fetch; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Document {
    Index(ImageIndex),
    Image(ImageManifest),
}

impl Document {
    /// An index when it has `manifests`, else an image manifest; `what` names it in errors.
    pub(crate) fn parse(bytes: &[u8], what: &str) -> anyhow::Result<Document> {
        #[derive(serde::Deserialize)]
        struct Probe {
            manifests: Option<serde::de::IgnoredAny>,
        }
        let probe: Probe = serde_json::from_slice(bytes).with_context(|| format!("{what} is not JSON"))?;
        Ok(match probe.manifests {
            Some(_) => Document::Index(index(bytes, what)?),
            None => Document::Image(manifest(bytes, what)?),
        })
    }

    /// The `mediaType` the document declares, or "" when it declares none.
    pub(crate) fn media_type(&self) -> String {
        let declared = match self {
            Document::Index(index) => index.media_type().as_ref(),
            Document::Image(manifest) => manifest.media_type().as_ref(),
        };
        declared.map(MediaType::to_string).unwrap_or_default()
    }
}

pub(crate) fn index(bytes: &[u8], what: &str) -> anyhow::Result<ImageIndex> {
    serde_json::from_slice(bytes).with_context(|| format!("{what} is not a valid image index"))
}

pub(crate) fn manifest(bytes: &[u8], what: &str) -> anyhow::Result<ImageManifest> {
    serde_json::from_slice(bytes).with_context(|| format!("{what} is not a valid image manifest"))
}

pub(crate) fn config(bytes: &[u8], what: &str) -> anyhow::Result<ImageConfiguration> {
    serde_json::from_slice(bytes).with_context(|| format!("{what} is not a valid image config"))
}

/// The bytes we publish for `document`: keys sorted (see the module comment).
pub(crate) fn to_bytes(document: &impl serde::Serialize) -> Vec<u8> {
    let value = serde_json::to_value(document).expect("an OCI document serializes");
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

/// Whether an index entry is an attestation (BuildKit's provenance and SBOM manifests,
/// marked by annotation, or listed as unknown/unknown) rather than a platform's image.
pub(crate) fn is_attestation(descriptor: &Descriptor) -> bool {
    let annotated = descriptor
        .annotations()
        .as_ref()
        .and_then(|annotations| annotations.get("vnd.docker.reference.type"))
        .is_some_and(|kind| kind == "attestation-manifest");
    let unknown = descriptor.platform().as_ref().is_some_and(|platform| {
        *platform.os() == Os::Other("unknown".into())
            && *platform.architecture() == Arch::Other("unknown".into())
    });
    annotated || unknown
}

/// `os/architecture` of an index entry, `unknown/unknown` when it names no platform.
pub(crate) fn platform_of(descriptor: &Descriptor) -> String {
    match descriptor.platform() {
        Some(platform) => format!("{}/{}", platform.os(), platform.architecture()),
        None => "unknown/unknown".to_owned(),
    }
}

/// An index entry for the image manifest `manifest` (of `media_type`), its platform
/// taken from the image's config: the one spelling both the engine builder and `merge`
/// use, so they agree byte for byte.
pub(crate) fn manifest_descriptor(
    manifest: &[u8],
    media_type: &str,
    config: &ImageConfiguration,
) -> Descriptor {
    let digest: oci_spec::image::Digest = crate::registry::digest::sha256_digest(manifest)
        .parse()
        .expect("sha256_digest spells a valid digest");
    let mut descriptor = Descriptor::new(MediaType::from(media_type), manifest.len() as u64, digest);
    let mut platform = Platform::default();
    platform.set_os(config.os().clone());
    platform.set_architecture(config.architecture().clone());
    descriptor.set_platform(Some(platform));
    descriptor
}
