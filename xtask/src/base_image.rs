//! `cargo xtask base-image`: the agent-runner's base image pin, the Dockerfile's one
//! `ARG BASE_IMAGE=NAME:TAG@sha256:...` line. Prints it, or with `--bump` asks the
//! registry which index the tag names now and rewrites that line, saying what changed
//! for each platform we ship. Reading the pin is `project.rs`'s (every build reads it);
//! this module is its only writer, and it never builds or pushes anything.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use oci_client::secrets::RegistryAuth;
use serde::Serialize;
use xshell::Shell;

use crate::{
    files, flags,
    platform::Platform,
    project::{self, BaseImage},
    registry::{
        document::{self, is_attestation, platform_of, Document},
        oci::{self, ImageRef, Registry, RetryPolicy},
    },
};

impl flags::BaseImage {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let path = sh.current_dir().join(project::DOCKERFILE);
        let text = sh.read_file(&path).with_context(|| format!("reading {}", path.display()))?;
        let (line, value) = project::pin_line(&text)?;
        if !self.bump {
            let pin = BaseImage::pinned(value)?;
            if self.json {
                let json =
                    serde_json::json!({ "reference": pin.reference, "name": pin.name, "digest": pin.digest });
                println!("{}", serde_json::to_string_pretty(&json)?);
            } else {
                println!("{}", pin.reference);
            }
            return Ok(());
        }
        // A pin whose digest is missing or malformed still names the tag to follow:
        // that is how a new base is pinned (write the tag, then bump).
        let pinned = BaseImage::given(value);
        let source: ImageRef = self.from.as_deref().unwrap_or(&pinned.name).parse()?;
        if source.target.starts_with("sha256:")
            || !pinned.name.rsplit('/').next().unwrap_or_default().contains(':')
        {
            bail!(
                "--bump follows a tag: {} must name NAME:TAG (e.g. python:3.11-slim), and --from a tag too",
                project::DOCKERFILE
            );
        }
        let old = pinned.digest.filter(|_| BaseImage::pinned(value).is_ok());
        let report = oci::block_on(resolve(&source, &pinned.name, old))?;
        let written = match (&report.change, self.dry_run) {
            (None, _) | (Some(_), true) => false,
            (Some(_), false) => {
                let new_line = format!("ARG BASE_IMAGE={}@{}", report.name, report.new);
                BaseImage::pinned(&new_line["ARG BASE_IMAGE=".len()..])?;
                files::write_atomically(&path, replace_line(&text, line, &new_line).as_bytes())?;
                true
            }
        };
        if self.json {
            let json = serde_json::json!({ "report": report, "written": written });
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            print!("{}", report.describe());
            match (&report.change, written) {
                (None, _) => println!("nothing written"),
                (Some(_), true) => println!("wrote {}: commit it, then build", project::DOCKERFILE),
                (Some(_), false) => println!("dry run: {} unchanged", project::DOCKERFILE),
            }
        }
        Ok(())
    }
}

/// What a bump found: the tag's index now, and how it differs from the pinned one.
#[derive(Debug, Serialize)]
struct Report {
    /// The name the pin keeps (`python:3.11-slim`), whatever `--from` read.
    name: String,
    /// Where the tag was read: the name itself, or `--from`'s copy.
    source: String,
    /// The pinned index digest, `None` when the pin had none (a new base).
    old: Option<String>,
    new: String,
    /// `None`: the tag names the pinned index.
    change: Option<Vec<PlatformChange>>,
}

#[derive(Debug, Serialize)]
struct PlatformChange {
    platform: String,
    /// `None`: the old index is not in the source (or had no such platform).
    old: Option<String>,
    new: String,
    differences: Vec<String>,
}

/// One platform's image of an index, as much of it as a bump reports.
#[derive(Debug, Default)]
struct Image {
    digest: String,
    created: Option<String>,
    env: Vec<String>,
    layers: Vec<String>,
}

impl Report {
    fn describe(&self) -> String {
        let old = self.old.as_deref().unwrap_or("no digest");
        let Some(changes) = &self.change else {
            return format!(
                "{}@{} is current: {} names the pinned index\n",
                self.name, self.new, self.source
            );
        };
        let mut out = format!("{}: {old} -> {} (read from {})\n", self.name, self.new, self.source);
        for change in changes {
            let old = change.old.as_deref().unwrap_or("(not in the old index)");
            out += &format!("  {:<12} {old} -> {}\n", change.platform, change.new);
            for difference in &change.differences {
                out += &format!("  {:<12}   {difference}\n", "");
            }
        }
        out
    }
}

/// Reads what `source`'s tag names now and, when it is not `old`, each platform's image
/// in both indexes. Anonymous: the base is public, and a bump needs no login.
async fn resolve(source: &ImageRef, name: &str, old: Option<String>) -> anyhow::Result<Report> {
    let registry = Registry::connect(
        source.repository.clone(),
        RegistryAuth::Anonymous,
        "anonymous access".to_owned(),
        RetryPolicy::default(),
    )
    .await;
    let (bytes, new) = registry
        .manifest(&source.target)
        .await
        .with_context(|| format!("reading {source}"))?
        .with_context(|| format!("{source} names nothing: check the tag, or --from"))?;
    let new_index = index(&bytes, source)?;
    let mut report =
        Report { name: name.to_owned(), source: source.to_string(), old: old.clone(), new, change: None };
    if old.as_deref() == Some(report.new.as_str()) {
        return Ok(report);
    }
    let old_index = match &old {
        Some(digest) => match registry.manifest(digest).await? {
            Some((bytes, _)) => Some(index(&bytes, source)?),
            None => None,
        },
        None => None,
    };
    let mut changes = Vec::new();
    for platform in Platform::ALL {
        let new = image(&registry, &new_index, platform).await?.with_context(|| {
            format!("{source} has no {platform} image: the agent-runner ships {platform}")
        })?;
        let old = match &old_index {
            Some(index) => image(&registry, index, platform).await?,
            None => None,
        };
        changes.push(PlatformChange {
            platform: platform.to_string(),
            old: old.as_ref().map(|old| old.digest.clone()),
            differences: old.map_or_else(Vec::new, |old| differences(&old, &new)),
            new: new.digest,
        });
    }
    report.change = Some(changes);
    Ok(report)
}

fn index(bytes: &[u8], source: &ImageRef) -> anyhow::Result<oci_spec::image::ImageIndex> {
    match Document::parse(bytes, &source.to_string())? {
        Document::Index(index) => Ok(index),
        Document::Image(_) => bail!(
            "{source} names one image, not a multi-arch index: the pin names an index, so that \
             every platform builds from the same release of the base"
        ),
    }
}

/// `platform`'s image in `index`: its manifest digest and config.
async fn image(
    registry: &Registry,
    index: &oci_spec::image::ImageIndex,
    platform: Platform,
) -> anyhow::Result<Option<Image>> {
    let wanted = platform.to_string();
    let Some(entry) = index.manifests().iter().find(|d| !is_attestation(d) && platform_of(d) == wanted)
    else {
        return Ok(None);
    };
    let digest = entry.digest().to_string();
    let (bytes, _) = registry
        .manifest(&digest)
        .await?
        .with_context(|| format!("the index names {digest} for {platform}, which the registry lacks"))?;
    let manifest = document::manifest(&bytes, &digest)?;
    let descriptor = manifest.config();
    let config = registry.pull_blob_checked(descriptor.digest().as_ref(), descriptor.size()).await?;
    let config = document::config(&config, &format!("config {}", descriptor.digest()))?;
    Ok(Some(Image {
        digest,
        created: config.created().clone(),
        env: config.config().as_ref().and_then(|c| c.env().clone()).unwrap_or_default(),
        layers: config.rootfs().diff_ids().clone(),
    }))
}

/// What a maintainer reads to judge a bump: when each image was made, the environment
/// it sets (the Python version is there), and how much of it is new.
fn differences(old: &Image, new: &Image) -> Vec<String> {
    let mut out = Vec::new();
    if old.created != new.created {
        let show = |created: &Option<String>| created.clone().unwrap_or_else(|| "unknown".to_owned());
        out.push(format!("created {} -> {}", show(&old.created), show(&new.created)));
    }
    let entries = |env: &[String]| -> BTreeMap<String, String> {
        env.iter()
            .map(|entry| {
                let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect()
    };
    let (before, after) = (entries(&old.env), entries(&new.env));
    for (key, value) in &after {
        match before.get(key) {
            Some(was) if was == value => {}
            Some(was) => out.push(format!("Env {key} {was} -> {value}")),
            None => out.push(format!("Env {key}={value} added")),
        }
    }
    for (key, value) in &before {
        if !after.contains_key(key) {
            out.push(format!("Env {key}={value} removed"));
        }
    }
    let fresh = new.layers.iter().filter(|layer| !old.layers.contains(layer)).count();
    if fresh > 0 || old.layers.len() != new.layers.len() {
        out.push(format!("layers: {fresh} of {} new", new.layers.len()));
    }
    if out.is_empty() {
        out.push("the same config (another manifest of it)".to_owned());
    }
    out
}

/// `text` with its line `index` replaced by `line`, every other byte kept (line endings
/// included).
fn replace_line(text: &str, index: usize, line: &str) -> String {
    text.split_inclusive('\n')
        .enumerate()
        .map(|(at, old)| {
            if at != index {
                return old.to_owned();
            }
            let ending = &old[old.trim_end_matches(['\r', '\n']).len()..];
            format!("{line}{ending}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_says_what_the_configs_say_differently() {
        let old = Image {
            digest: "sha256:old".into(),
            created: Some("2026-07-01T00:00:00Z".into()),
            env: vec!["PATH=/usr/bin".into(), "PYTHON_VERSION=3.11.14".into(), "GONE=1".into()],
            layers: vec!["sha256:a".into(), "sha256:b".into()],
        };
        let new = Image {
            digest: "sha256:new".into(),
            created: Some("2026-08-05T01:12:29Z".into()),
            env: vec!["PATH=/usr/bin".into(), "PYTHON_VERSION=3.11.15".into(), "LANG=C.UTF-8".into()],
            layers: vec!["sha256:a".into(), "sha256:c".into()],
        };
        assert_eq!(
            differences(&old, &new),
            [
                "created 2026-07-01T00:00:00Z -> 2026-08-05T01:12:29Z",
                "Env LANG=C.UTF-8 added",
                "Env PYTHON_VERSION 3.11.14 -> 3.11.15",
                "Env GONE=1 removed",
                "layers: 1 of 2 new",
            ]
        );
    }

    #[test]
    fn the_rewrite_changes_one_line_and_keeps_every_other_byte() {
        let text = "# a\r\nARG BASE_IMAGE=python:3.11-slim\r\nFROM x\n\nlast";
        assert_eq!(
            replace_line(text, 1, "ARG BASE_IMAGE=new"),
            "# a\r\nARG BASE_IMAGE=new\r\nFROM x\n\nlast"
        );
        assert_eq!(replace_line(text, 4, "end"), "# a\r\nARG BASE_IMAGE=python:3.11-slim\r\nFROM x\n\nend");
    }
}
