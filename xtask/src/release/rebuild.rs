//! `verify-release --rebuild`: the release checked against the sources it came from, not
//! only against a signature. The release's tag is cloned into a temporary directory and
//! built there again: the CLI archives asked for, by `dist`, stamped as release.yml's CLI
//! jobs stamp them (the release's version, the tag's commit and its time, the verified
//! image digest), each compared byte for byte with checksums.txt; and the agent-runner's
//! platform images asked for, each compared by manifest digest with the entry the
//! verified index lists for that platform. The same bytes show that the artifact is what
//! the tag's sources build; other bytes name the archive and the first entry in it that
//! differs, or the platform, both digests and what in the manifest differs.
//!
//! A rebuild compiles: cargo builds the CLI in the clone and `dist` never takes a binary
//! it kept from an earlier build of the same inputs (`Reuse::Never`). Cargo's target
//! directory is the caller's (`project::target_dir`), so dependencies
//! compiled before are reused; the CLI itself is compiled and linked again, at another
//! path than the release's. The image is built with no layer from the engine's or
//! BuildKit's cache (`no_cache`); the engine builder takes the locked dependencies from
//! `target/prepared-dependencies` when it installed that lock before (a cache keyed by
//! the lock, the wheel selection and the Python that compiles them, which is what a
//! fresh install would make).
//!
//! It must build the image the way the release did, or nothing could match: the same
//! builder, the base the tag's Dockerfile pins (what the release's plan recorded), the
//! version, the tag's commit and the commit's time. The builder is read from what the
//! release published (`builder_of`), never asked for.

use std::path::Path;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde_json::Value;
use xshell::{cmd, Shell};

use crate::{
    build::engine::Engine,
    dist::{self, checksums::Archive, Reuse, Stamp},
    plan::{self, Kind, World},
    platform::{Platform, Target},
    project,
    publish::{
        buildx::{self, Capabilities},
        engine_push,
        publish_plan::{Builder, PublishPlan, Steps},
    },
    registry::{
        digest::{sha256_digest, sha256_hex},
        document::{self, is_attestation, platform_of},
        oci::{Registry, Repository, REVISION_KEY},
    },
};

/// What to rebuild, and from where.
pub(crate) struct Rebuild {
    /// A git URL or path that has the release's tag.
    pub(crate) source: String,
    /// The targets whose archives to rebuild (`--target`).
    pub(crate) targets: Vec<Target>,
    /// The platforms whose images to rebuild (`--platform`).
    pub(crate) platforms: Vec<Platform>,
}

impl Rebuild {
    /// Neither `--target` nor `--platform`: everything. Either: only what they name, so
    /// that `--target` alone (release.yml's verify job) builds no image.
    fn everything(&self) -> bool {
        self.targets.is_empty() && self.platforms.is_empty()
    }
}

/// The release as `verify-release` found it: what the rebuilt artifacts must equal.
pub(crate) struct Published<'a> {
    pub(crate) tag: &'a str,
    pub(crate) version: &'a semver::Version,
    /// The directory with the release's own archives, to name what differs.
    pub(crate) dir: &'a Path,
    /// checksums.txt's archives: names and sha256s.
    pub(crate) archives: &'a [(String, String)],
    pub(crate) repository: &'a Repository,
    /// The index digest that verified under the version tag.
    pub(crate) index_digest: &'a str,
}

/// One rebuilt artifact: its subject (an archive's name, or the image and platform) and
/// whether it came out the same (`Err` says how it differs).
pub(crate) type Rebuilt = (String, Result<String, String>);

/// Clones the tag once and rebuilds what `rebuild` asks for in it: the archives first,
/// then the platform images.
pub(crate) async fn rebuild(
    sh: &Shell,
    rebuild: &Rebuild,
    published: &Published<'_>,
    registry: &Registry,
) -> anyhow::Result<Vec<Rebuilt>> {
    let tag = published.tag;
    let chosen: Vec<(Archive, &str)> = match rebuild.everything() || !rebuild.targets.is_empty() {
        false => Vec::new(),
        true => published
            .archives
            .iter()
            .filter_map(|(name, sha256)| Some((Archive::parse(name)?, sha256.as_str())))
            .filter(|(archive, _)| rebuild.targets.is_empty() || rebuild.targets.contains(&archive.target))
            .collect(),
    };
    if !rebuild.targets.is_empty() && chosen.is_empty() {
        bail!("checksums.txt lists no archive of the targets to rebuild");
    }
    // What the index lists, read before anything is cloned or built.
    let images = match rebuild.everything() || !rebuild.platforms.is_empty() {
        false => None,
        true => Some(published_images(registry, published.index_digest).await?),
    };
    // release.yml stamps and builds with the commit's time: a SOURCE_DATE_EPOCH here
    // would stamp and build another.
    if sh.var_os("SOURCE_DATE_EPOCH").is_some() {
        bail!("unset SOURCE_DATE_EPOCH: a release is stamped with its commit's time, which the rebuild reads from the tag");
    }
    let temp = tempfile::tempdir()?;
    let checkout = temp.path().join(format!("stigmer-{tag}"));
    let target_dir = project::target_dir(sh);
    let source = &rebuild.source;
    eprintln!("==> rebuilding {tag} from {source}");
    cmd!(sh, "git -c advice.detachedHead=false clone --quiet --depth 1 --branch {tag} {source} {checkout}")
        .run()
        .with_context(|| format!("cloning {tag} from {source}: is --source the release's repository?"))?;
    let _in_clone = sh.push_dir(&checkout);
    // The caller's target directory, not the clone's: its dependency builds, layer cache
    // and prepared dependencies, as the caller's own builds keep them.
    let _target_dir = sh.push_env("CARGO_TARGET_DIR", &target_dir);
    let commit = project::git_revision(sh);
    let mut results = Vec::new();
    if !chosen.is_empty() {
        results.extend(archives(sh, published, &commit, chosen, &temp.path().join("dist"))?);
    }
    if let Some(images) = images {
        let platforms = match rebuild.platforms.is_empty() {
            true => Platform::ALL.to_vec(),
            false => rebuild.platforms.clone(),
        };
        results.extend(platform_images(sh, published, &commit, &images, &platforms, registry).await?);
    }
    Ok(results)
}

/// Rebuilds the chosen archives (with checksums.txt's sha256 of each) into `out`, in the
/// clone the shell is in, with the caller's cargo target directory.
fn archives(
    sh: &Shell,
    published: &Published<'_>,
    commit: &str,
    chosen: Vec<(Archive, &str)>,
    out: &Path,
) -> anyhow::Result<Vec<Rebuilt>> {
    let tag = published.tag;
    eprintln!("==> rebuilding {} archive(s) of {tag}", chosen.len());
    let stamp =
        Stamp::of_checkout(sh, Some(published.version.clone()), Some(published.index_digest.to_owned()))?;
    let targets: Vec<Target> = chosen.iter().map(|(archive, _)| archive.target).collect();
    dist::dist_with(sh, &targets, &stamp, out, Reuse::Never)
        .with_context(|| format!("rebuilding the archives of {tag} ({commit})"))?;

    let mut results = Vec::new();
    for (archive, listed_sha256) in chosen {
        let rebuilt = out.join(&archive.name);
        let bytes = std::fs::read(&rebuilt).with_context(|| format!("reading {}", rebuilt.display()))?;
        let sha256 = sha256_hex(&bytes);
        let result = if sha256 == listed_sha256 {
            Ok(format!("rebuilt from {tag} ({}): the same bytes", &commit[..commit.len().min(12)]))
        } else {
            let differs = match first_difference(&rebuilt, &published.dir.join(&archive.name)) {
                Some(Difference::Entry(entry)) => format!("; {entry} differs first"),
                // The compression or the archive's headers of another `dist` than the
                // release's.
                Some(Difference::Packing) => {
                    "; every file in it is the same: only the packing differs".to_owned()
                }
                None => String::new(),
            };
            Err(format!(
                "rebuilt from {tag} ({commit}) it is sha256 {sha256}, checksums.txt says {listed_sha256}{differs}"
            ))
        };
        results.push((archive.name, result));
    }
    Ok(results)
}

/// How two archives of different bytes differ.
enum Difference {
    /// The first entry (by the rebuilt archive's order) whose bytes differ from the
    /// published archive's, or that only one of them has.
    Entry(String),
    /// The same entries: only the packing differs.
    Packing,
}

/// How `rebuilt` differs from `published`; `None` when either cannot be read.
fn first_difference(rebuilt: &Path, published: &Path) -> Option<Difference> {
    let (rebuilt, published) = (dist::read_entries(rebuilt).ok()?, dist::read_entries(published).ok()?);
    let found = rebuilt.iter().find(|(name, bytes)| {
        published.iter().find(|(other, _)| other == name).is_none_or(|(_, other_bytes)| other_bytes != bytes)
    });
    let only_published =
        || published.iter().find(|(name, _)| !rebuilt.iter().any(|(other, _)| other == name));
    Some(
        found
            .or_else(only_published)
            .map_or(Difference::Packing, |(name, _)| Difference::Entry(name.clone())),
    )
}

/// What the verified index holds: each platform's manifest digest, and the builder that
/// made it.
struct PublishedImages {
    entries: Vec<(String, String)>,
    builder: Builder,
}

async fn published_images(registry: &Registry, index_digest: &str) -> anyhow::Result<PublishedImages> {
    let (bytes, _) = registry.manifest(index_digest).await?.context("the verified index vanished")?;
    let index = document::index(&bytes, index_digest)?;
    let entries = (index.manifests().iter().filter(|entry| !is_attestation(entry)))
        .map(|entry| (platform_of(entry), entry.digest().to_string()))
        .collect();
    Ok(PublishedImages { entries, builder: builder_of(&index) })
}

/// The builder a release's index was made by, read from its layout: buildx puts
/// BuildKit's provenance and SBOM into the index as attestation manifests, the engine
/// builder's index has none (its attestations are cosign's, beside it). The two do not
/// make the same bytes from one commit (each writes its own config history and
/// compresses layers its own way), so a rebuild must use the release's; reading it from
/// the index means no flag can disagree with what was published. (release.yml builds
/// with buildx; which BuildKit, the index does not say: `buildkit_note` compares.)
fn builder_of(index: &document::ImageIndex) -> Builder {
    match index.manifests().iter().any(is_attestation) {
        true => Builder::Buildx,
        false => Builder::Engine,
    }
}

/// One platform image as a build made it: the manifest and config bytes.
struct Image {
    manifest: Bytes,
    config: Bytes,
}

/// Rebuilds `platforms` in the clone the shell is in, with the release's builder, and
/// compares each manifest digest with the index's entry for that platform.
async fn platform_images(
    sh: &Shell,
    published: &Published<'_>,
    commit: &str,
    images: &PublishedImages,
    platforms: &[Platform],
    registry: &Registry,
) -> anyhow::Result<Vec<Rebuilt>> {
    let tag = published.tag;
    let subject = |platform: &Platform| format!("{}:{tag} {platform}", published.repository);
    let mut results = Vec::new();
    let mut to_build = Vec::new();
    for platform in platforms {
        match images.entries.iter().find(|(listed, _)| *listed == platform.to_string()) {
            Some((_, digest)) => to_build.push((*platform, digest.clone())),
            None => results.push((subject(platform), Err(format!("the index lists no {platform} image")))),
        }
    }
    if to_build.is_empty() {
        return Ok(results);
    }
    let plan = rebuild_plan(sh, published, images.builder, to_build.iter().map(|(p, _)| *p).collect())?;
    eprintln!(
        "==> rebuilding the {} image(s) of {tag} with the {} builder, from {}",
        to_build.len(),
        match images.builder {
            Builder::Buildx => "buildx",
            Builder::Engine => "engine",
        },
        plan.base_image.as_deref().unwrap_or("no base")
    );
    // A build that fails is that platform's failed row (buildx builds them in one).
    let built: Vec<(Platform, Result<Image, String>)> = match images.builder {
        Builder::Engine => {
            let engine = Engine::connect(sh)?;
            let build = |platform| -> anyhow::Result<Image> {
                let started = std::time::Instant::now();
                let image = engine_push::build_platform(sh, &engine, &plan, &Steps::default(), platform)?;
                eprintln!("==> {platform}: rebuilt in {:.1} s", started.elapsed().as_secs_f64());
                Ok(Image { manifest: image.manifest().clone(), config: image.config().clone() })
            };
            let failed = |err: anyhow::Error| format!("rebuilding it from {tag} ({commit}) failed: {err:#}");
            plan.platforms.iter().map(|&platform| (platform, build(platform).map_err(failed))).collect()
        }
        Builder::Buildx => {
            if let Err(why) = Capabilities::of_current_builder(sh).and_then(|found| match found.cannot() {
                Some(why) => Err(why),
                None => Ok(found),
            }) {
                bail!("{tag} was built by buildx (its index holds BuildKit's attestations), and so must its rebuild: {why}");
            }
            let built = buildx::build(sh, &plan).and_then(|layout| {
                let mut built = Vec::new();
                for (platform, manifest, config) in buildx::layout_images(&layout.path().join("layout"))? {
                    built.push((platform.parse::<Platform>()?, Image { manifest, config }));
                }
                Ok(built)
            });
            match built {
                Ok(built) => built.into_iter().map(|(platform, image)| (platform, Ok(image))).collect(),
                Err(err) => {
                    let failed = format!("rebuilding it from {tag} ({commit}) failed: {err:#}");
                    plan.platforms.iter().map(|&platform| (platform, Err(failed.clone()))).collect()
                }
            }
        }
    };
    let note = match images.builder {
        Builder::Buildx => buildkit_note(sh),
        Builder::Engine => String::new(),
    };
    for (platform, listed) in to_build {
        let image = match built.iter().find(|(made, _)| *made == platform) {
            None => {
                results.push((subject(&platform), Err(format!("the rebuild made no {platform} image"))));
                continue;
            }
            Some((_, Err(failed))) => {
                results.push((subject(&platform), Err(failed.clone())));
                continue;
            }
            Some((_, Ok(image))) => image,
        };
        let digest = sha256_digest(&image.manifest);
        let result = if digest == listed {
            Ok(format!(
                "rebuilt from {tag} ({}): the same manifest {digest}",
                &commit[..commit.len().min(12)]
            ))
        } else {
            let differs = match explain(registry, &listed, image).await {
                Ok(what) => format!("; {what}"),
                Err(err) => format!("; the published manifest could not be read: {err:#}"),
            };
            Err(format!(
                "rebuilt from {tag} ({commit}) it is {digest}, the published index lists {listed}{differs}{note}"
            ))
        };
        results.push((subject(&platform), result));
    }
    Ok(results)
}

/// A publish plan as release.yml's image-platform jobs had it: the release's version
/// and repository, the base the tag's Dockerfile pins (which the release's plan
/// recorded), the tag's commit and time as build arguments, no cache. Nothing is pushed.
fn rebuild_plan(
    sh: &Shell,
    published: &Published<'_>,
    builder: Builder,
    platforms: Vec<Platform>,
) -> anyhow::Result<PublishPlan> {
    let base = project::pinned_base(sh)?.with_context(|| {
        format!("{} has no {}: it builds no image to compare", published.tag, project::DOCKERFILE)
    })?;
    let kind = if published.version.pre.is_empty() { Kind::Release } else { Kind::PreRelease };
    let release = plan::compute(
        published.version,
        kind,
        false,
        published.repository,
        Some(base.reference.as_str()),
        &World::default(),
    );
    let build_args = crate::image::build_args(sh, Some(&base), published.version)?;
    Ok(PublishPlan {
        release,
        repository: published.repository.clone(),
        platforms,
        builder,
        builder_reason: "the release's builder, read from its index".to_owned(),
        base_image: Some(base.reference),
        build_args,
        context: sh.current_dir().join("agent-runner"),
        credentials_source: "the Docker config".to_owned(),
        explicit_auth: None,
        sbom_generator: None,
        cache_from: Vec::new(),
        cache_to: Vec::new(),
        no_cache: true,
        signer: None,
    })
}

/// What differs between the published manifest `listed` and a rebuilt image: the config
/// (its first differing fields, by path) and the layers, by position.
async fn explain(registry: &Registry, listed: &str, rebuilt: &Image) -> anyhow::Result<String> {
    let (bytes, _) =
        registry.manifest(listed).await?.with_context(|| format!("{listed} is not in the registry"))?;
    let (theirs, ours) =
        (document::manifest(&bytes, listed)?, document::manifest(&rebuilt.manifest, "the rebuilt manifest")?);
    let mut what = Vec::new();
    if theirs.config().digest() != ours.config().digest() {
        let descriptor = theirs.config();
        let config = registry.pull_blob_checked(descriptor.digest().as_ref(), descriptor.size()).await?;
        let (theirs, ours): (Value, Value) =
            (serde_json::from_slice(&config)?, serde_json::from_slice(&rebuilt.config)?);
        let mut paths = Vec::new();
        differing_paths(&theirs, &ours, String::new(), &mut paths);
        let shown: Vec<&str> = paths.iter().take(3).map(String::as_str).collect();
        let more = match paths.len().saturating_sub(shown.len()) {
            0 => String::new(),
            more => format!(" and {more} more"),
        };
        what.push(format!("the config differs at {}{more}", shown.join(", ")));
        // The commit a platform image names is the likeliest story: built from another.
        let revision = |config: &Value| config["config"]["Labels"][REVISION_KEY].as_str().map(str::to_owned);
        if let Some(named) = revision(&theirs).filter(|named| Some(named) != revision(&ours).as_ref()) {
            what.push(format!("the published config says it was built from {named}"));
        }
    }
    let (theirs, ours) = (theirs.layers(), ours.layers());
    let layers: Vec<String> = (0..theirs.len().max(ours.len()))
        .filter(|&at| theirs.get(at).map(|l| l.digest()) != ours.get(at).map(|l| l.digest()))
        .map(|at| (at + 1).to_string())
        .collect();
    match layers.as_slice() {
        [] => {}
        [one] => what.push(format!("layer {one} of {} differs", theirs.len())),
        many => what.push(format!("layers {} of {} differ", many.join(", "), theirs.len())),
    }
    if what.is_empty() {
        what.push("only the manifest's own bytes differ".to_owned());
    }
    Ok(what.join("; "))
}

/// The paths (`config.Labels["org.opencontainers.image.revision"]`, `history[9].created`)
/// of the leaves that differ between two JSON documents, in key order.
fn differing_paths(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let path = match at.is_empty() {
                    true => key.clone(),
                    false if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                        format!("{at}.{key}")
                    }
                    false => format!("{at}[{key:?}]"),
                };
                differing_paths(
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                    path,
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (position, (a, b)) in x.iter().zip(y).enumerate() {
                differing_paths(a, b, format!("{at}[{position}]"), out);
            }
        }
        (a, b) if a != b => out.push(at),
        _ => {}
    }
}

/// For a buildx rebuild that differs: this machine's BuildKit beside the one the tag's
/// release.yml pins, when they are not the same release. Another BuildKit can assemble
/// other bytes from the same build (ARCHITECTURE.md, "Reproducible builds").
fn buildkit_note(sh: &Shell) -> String {
    let pinned = sh.read_file(".github/workflows/release.yml").ok().and_then(|workflow| {
        let (_, after) = workflow.split_once("image=moby/buildkit:")?;
        Some(after.split(['@', '\n', ' ']).next()?.to_owned())
    });
    let here = buildx::buildkit_version(sh);
    match (here, pinned) {
        (Some(here), Some(pinned)) if here != pinned => {
            format!(" (this builder runs BuildKit {here}, the tag's release.yml pins {pinned}: rebuild with that one)")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar.gz of `files` at deflate `level`.
    fn archive(dir: &Path, name: &str, level: u32, files: &[(&str, &str)]) -> std::path::PathBuf {
        let path = dir.join(name);
        let gzip = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::new(level),
        );
        let mut tar = tar::Builder::new(gzip);
        for (name, text) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, text.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn an_archive_that_differs_names_its_first_file_or_else_its_packing() {
        let dir = tempfile::tempdir().unwrap();
        let text = "the same file, long enough that two deflate levels pack it apart. ".repeat(40);
        let published = archive(dir.path(), "published.tar.gz", 9, &[("a", &text), ("b", "b")]);
        let repacked = archive(dir.path(), "repacked.tar.gz", 1, &[("a", &text), ("b", "b")]);
        assert_ne!(std::fs::read(&published).unwrap(), std::fs::read(&repacked).unwrap());
        assert!(matches!(first_difference(&repacked, &published), Some(Difference::Packing)));
        let changed = archive(dir.path(), "changed.tar.gz", 9, &[("a", &text), ("b", "c")]);
        assert!(
            matches!(first_difference(&changed, &published), Some(Difference::Entry(name)) if name == "b")
        );
        let fewer = archive(dir.path(), "fewer.tar.gz", 9, &[("a", &text)]);
        assert!(matches!(first_difference(&fewer, &published), Some(Difference::Entry(name)) if name == "b"));
        assert!(first_difference(&dir.path().join("missing.tar.gz"), &published).is_none());
    }

    #[test]
    fn the_paths_that_differ_are_named_in_key_order() {
        let a = serde_json::json!({
            "config": { "Labels": { "org.opencontainers.image.revision": "a", "same": "x" } },
            "created": "2026-01-01T00:00:00Z",
            "history": [{ "created": "1" }, { "created": "2" }],
            "rootfs": { "diff_ids": ["sha256:1", "sha256:2"] },
        });
        let b = serde_json::json!({
            "config": { "Labels": { "org.opencontainers.image.revision": "b", "same": "x" } },
            "created": "2026-01-01T00:00:00Z",
            "history": [{ "created": "1" }, { "created": "3" }],
            "rootfs": { "diff_ids": ["sha256:1", "sha256:3"] },
        });
        let mut paths = Vec::new();
        differing_paths(&a, &b, String::new(), &mut paths);
        assert_eq!(
            paths,
            [
                r#"config.Labels["org.opencontainers.image.revision"]"#,
                "history[1].created",
                "rootfs.diff_ids[1]",
            ]
        );
    }
}
