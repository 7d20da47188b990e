//! `cargo xtask verify-image`: proves what a registry holds under a tag, with the OCI
//! client and nothing else: an OCI index or Docker manifest list with exactly the
//! expected platforms (attestations counted apart), each platform's config agreeing
//! with its descriptor, every blob present with its declared size and digest (every
//! byte is fetched and hashed), other tags resolving to the same digest, and (for a
//! publish) every platform built from the commit being released.
//! `image --push` calls `verify` before it moves `latest`.

use anyhow::bail;
use serde_json::{json, Value};
use xshell::Shell;

use crate::{
    flags,
    human::human_bytes,
    platform::Platform,
    registry::{
        document::{self, is_attestation, platform_of, Document, ImageManifest},
        oci::{self, ImageRef, Registry},
    },
};

impl flags::VerifyImage {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let image: ImageRef = self.reference.parse()?;
        let platforms = if self.platform.is_empty() { Platform::ALL.to_vec() } else { self.platform.clone() };
        let mut same_as = Vec::new();
        for other in &self.same_digest_as {
            let other: ImageRef = other.parse()?;
            if other.repository != image.repository {
                bail!("--same-digest-as {other} is in another repository than {image}");
            }
            same_as.push(other.target);
        }
        let registry = oci::connect(sh, &image.repository, None)?;
        let started = std::time::Instant::now();
        let report = oci::block_on(verify(&registry, &image.target, &platforms, None, &same_as))?;
        let requests = registry.requests();
        if self.json {
            let mut json = report.to_json();
            json["requests"] = requests.into();
            json["seconds"] = started.elapsed().as_secs_f64().into();
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            print!("{}", report.table(&image));
            println!("{requests} registry requests in {:.2} s", started.elapsed().as_secs_f64());
        }
        Ok(())
    }
}

pub(crate) struct Report {
    pub(crate) index_digest: String,
    pub(crate) media_type: String,
    pub(crate) platforms: Vec<PlatformReport>,
    pub(crate) attestations: usize,
    pub(crate) same_as: Vec<String>,
}

pub(crate) struct PlatformReport {
    pub(crate) platform: String,
    pub(crate) digest: String,
    /// Config plus layers, compressed, as stored.
    pub(crate) size: u64,
    pub(crate) layers: usize,
    pub(crate) created: String,
}

impl Report {
    fn to_json(&self) -> Value {
        json!({
            "index_digest": self.index_digest,
            "media_type": self.media_type,
            "attestations": self.attestations,
            "same_digest_as": self.same_as,
            "platforms": self.platforms.iter().map(|p| json!({
                "platform": p.platform, "digest": p.digest, "size": p.size,
                "layers": p.layers, "created": p.created,
            })).collect::<Vec<_>>(),
        })
    }

    pub(crate) fn table(&self, image: &ImageRef) -> String {
        let mut out = format!("verified {image}\n  index  {} ({})\n", self.index_digest, self.media_type);
        out += &format!("  {:<12} {:<73} {:>9} {:>6}  created\n", "platform", "manifest", "size", "layers");
        for p in &self.platforms {
            out += &format!(
                "  {:<12} {:<73} {:>9} {:>6}  {}\n",
                p.platform,
                p.digest,
                human_bytes(p.size),
                p.layers,
                p.created
            );
        }
        if self.attestations > 0 {
            out += &format!("  + {} attestation manifest(s), not counted as platforms\n", self.attestations);
        }
        for tag in &self.same_as {
            out += &format!("  {tag} points at the same index\n");
        }
        out
    }
}

/// Checks everything and reports every problem found, not just the first.
/// With `revision`, every platform's image must have been built from that commit (its
/// config's `org.opencontainers.image.revision` label): a merge names images by digest,
/// and one built from another commit would publish this version with another's code.
pub(crate) async fn verify(
    registry: &Registry,
    target: &str,
    expected: &[Platform],
    revision: Option<&str>,
    same_as: &[String],
) -> anyhow::Result<Report> {
    let repository = registry.repository();
    let Some((index_bytes, index_digest)) = registry.manifest(target).await? else {
        bail!("{repository}:{target} does not exist");
    };
    let what = format!("{repository}:{target}");
    let document = Document::parse(&index_bytes, &what)?;
    let media_type = document.media_type();
    let index = match document {
        Document::Index(index) if media_type == oci::OCI_INDEX || media_type == oci::DOCKER_MANIFEST_LIST => {
            index
        }
        _ => bail!(
            "{what} is a {} rather than a multi-platform index (an OCI image index or Docker manifest list)",
            if media_type.is_empty() { "manifest without a media type" } else { &media_type }
        ),
    };

    let mut problems = Vec::new();
    let mut platforms = Vec::new();
    let mut attestations = 0;
    let mut seen = Vec::new();
    for descriptor in index.manifests() {
        let digest = descriptor.digest().to_string();
        let declared_size = descriptor.size();
        let platform = platform_of(descriptor);
        let Some((bytes, actual)) = registry.manifest(&digest).await? else {
            problems.push(format!("manifest {digest} ({platform}) is listed in the index but missing"));
            continue;
        };
        if actual != digest {
            problems.push(format!("manifest {digest} ({platform}) hashes to {actual}"));
        }
        if bytes.len() as u64 != declared_size {
            problems
                .push(format!("manifest {digest} has {} bytes, the index says {declared_size}", bytes.len()));
        }
        let manifest = match document::manifest(&bytes, &format!("manifest {digest} ({platform})")) {
            Ok(manifest) => manifest,
            Err(err) => {
                problems.push(format!("{err:#}"));
                continue;
            }
        };
        let (size, config) = check_blobs(registry, &manifest, &mut problems).await;
        if is_attestation(descriptor) {
            attestations += 1;
            continue;
        }
        if seen.contains(&platform) {
            problems.push(format!("{platform} is listed twice"));
        }
        seen.push(platform.clone());
        if !expected.iter().any(|p| p.to_string() == platform) {
            problems.push(format!("unexpected platform {platform}"));
        }

        let mut created = String::new();
        if let Some(config) = config {
            match document::config(&config, &format!("the config of {platform}")) {
                Ok(config) => {
                    let config_platform = format!("{}/{}", config.os(), config.architecture());
                    if config_platform != platform {
                        problems.push(format!(
                            "the manifest listed as {platform} has a config for {config_platform}"
                        ));
                    }
                    created = config.created().clone().unwrap_or_default();
                    let labels = config.config().as_ref().and_then(|config| config.labels().as_ref());
                    let built_from = labels.and_then(|labels| labels.get(oci::REVISION_KEY));
                    match (revision, built_from) {
                        (Some(revision), Some(built_from)) if built_from != revision => problems.push(format!(
                            "the {platform} image was built from {built_from}, not from {revision}"
                        )),
                        (Some(revision), None) => problems.push(format!(
                            "the {platform} image names no revision (its config has no {} label; this is {revision})",
                            oci::REVISION_KEY
                        )),
                        _ => {}
                    }
                }
                Err(err) => problems.push(format!("{err:#}")),
            }
        }
        let layers = manifest.layers().len();
        platforms.push(PlatformReport { platform, digest, size, layers, created });
    }
    for platform in expected {
        if !seen.contains(&platform.to_string()) {
            problems.push(format!("platform {platform} is missing from the index"));
        }
    }
    problems.extend(tags_elsewhere(registry, same_as, &index_digest).await?);
    if !problems.is_empty() {
        bail!("{repository}:{target} ({index_digest}) failed verification:\n  - {}", problems.join("\n  - "));
    }
    Ok(Report { index_digest, media_type, platforms, attestations, same_as: same_as.to_vec() })
}

/// The tags among `tags` that do not resolve to `digest`, each as a problem.
pub(crate) async fn tags_elsewhere(
    registry: &Registry,
    tags: &[String],
    digest: &str,
) -> anyhow::Result<Vec<String>> {
    let repository = registry.repository();
    let mut problems = Vec::new();
    for tag in tags {
        match registry.manifest(tag).await? {
            None => problems.push(format!("{repository}:{tag} does not exist")),
            Some((_, actual)) if actual != digest => {
                problems.push(format!("{repository}:{tag} points at {actual}, not at {digest}"))
            }
            Some(_) => {}
        }
    }
    Ok(problems)
}

/// Fetches the config and every layer of a manifest and checks each against its
/// descriptor. Returns their total size and the config's bytes when they checked out;
/// problems are recorded, not returned, so that one run reports all of them.
async fn check_blobs(
    registry: &Registry,
    manifest: &ImageManifest,
    problems: &mut Vec<String>,
) -> (u64, Option<Vec<u8>>) {
    let mut total = 0;
    let mut config = None;
    let descriptors = std::iter::once(manifest.config()).chain(manifest.layers());
    for (position, descriptor) in descriptors.enumerate() {
        let digest = descriptor.digest().to_string();
        let size = descriptor.size();
        total += size;
        match registry.pull_blob_checked(&digest, size).await {
            Ok(bytes) if position == 0 => config = Some(bytes),
            Ok(_) => {}
            Err(err) => problems.push(format!("blob {digest}: {err:#}")),
        }
    }
    (total, config)
}
