//! Which agent-runner image runs, and getting it into the engine. In order: `--image`
//! or `STIGMER_AGENT_RUNNER_IMAGE` (pulled when missing); the locally built
//! `<name>:local` (what `cargo xtask image --local` makes); else the published
//! `<registry>/agent-runner:v<version>` (`build_info::published_image`: the stamped
//! version `--version` prints, or the digest this CLI was built with when it has one),
//! pulled with progress and tagged `<name>:local`.
//! `STIGMER_REGISTRY` points at another registry (tests use their own). A registry that
//! needs a login gets the one `docker login` wrote into the Docker config.

use std::collections::HashMap;

use anyhow::bail;
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{CreateImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;

use crate::engine::{docker_config_dir, is_not_found, root_cause, Engine};

pub(crate) const VERSION_LABEL: &str = "org.opencontainers.image.version";

/// The image to run, resolved and present in the engine.
pub(crate) async fn ensure(
    engine: &Engine,
    name: &str,
    explicit: Option<String>,
    pinned_digest: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(reference) = explicit {
        if !exists(engine, &reference).await? {
            pull(engine, &reference).await.map_err(|err| pull_failed(&reference, err, None))?;
        }
        return Ok(reference);
    }
    let local = format!("{name}:local");
    if let Some(labels) = labels(engine, &local).await? {
        let version = labels.get(VERSION_LABEL).map(String::as_str).unwrap_or("unknown");
        if version != crate::build_info::VERSION {
            eprintln!(
                "note: {local} is agent-runner {version}, this CLI is {}: rebuild it with \
                 `cargo xtask image --local`, or remove it (`docker image rm {local}`) to run the \
                 published image",
                crate::build_info::VERSION
            );
        }
        return Ok(local);
    }
    let registry =
        std::env::var("STIGMER_REGISTRY").unwrap_or_else(|_| crate::build_info::DEFAULT_REGISTRY.to_owned());
    let repository = format!("{}/agent-runner", registry.trim_end_matches('/'));
    let published =
        crate::build_info::published_image(&repository, crate::build_info::VERSION, pinned_digest);
    eprintln!("{local} not found; pulling {published}");
    // A snapshot's tag is never pushed: say so rather than leave the user to wonder.
    let why =
        (pinned_digest.is_none() && crate::build_info::is_snapshot(crate::build_info::VERSION)).then(|| {
            format!(
                "This CLI is a snapshot build ({}): snapshot images are never published.\n",
                crate::build_info::VERSION
            )
        });
    pull(engine, &published).await.map_err(|err| pull_failed(&published, err, why.as_deref()))?;
    let options = TagImageOptionsBuilder::new().repo(name).tag("local").build();
    engine.docker.tag_image(&published, Some(options)).await?;
    Ok(local)
}

/// A reference as Docker shows it: Podman's Docker API reports the names it normalised
/// (`docker.io/library/stigmer:local` for `stigmer:local`).
pub(crate) fn familiar(reference: &str) -> &str {
    reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference)
}

async fn exists(engine: &Engine, reference: &str) -> anyhow::Result<bool> {
    Ok(labels(engine, reference).await?.is_some())
}

/// The image's labels, or `None` when the engine does not have it.
pub(crate) async fn labels(
    engine: &Engine,
    reference: &str,
) -> anyhow::Result<Option<HashMap<String, String>>> {
    match engine.docker.inspect_image(reference).await {
        Ok(image) => Ok(Some(image.config.and_then(|c| c.labels).unwrap_or_default())),
        Err(err) if is_not_found(&err) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Pulls one reference (never a whole repository), showing progress per layer
/// (`progress`).
async fn pull(engine: &Engine, reference: &str) -> anyhow::Result<()> {
    let (repository, tag) = split_reference(reference);
    let options = CreateImageOptionsBuilder::new().from_image(repository).tag(tag).build();
    let mut stream = engine.docker.create_image(Some(options), None, docker_login(registry_of(repository)));
    let mut progress = crate::progress::PullProgress::for_stderr();
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => match info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                Some(message) => failure = Some(message),
                None => progress.show(&info),
            },
            Err(err) => failure = Some(root_cause(&err)),
        }
    }
    progress.finish();
    // bollard 0.21 can end a good pull with a spurious stream error: the engine's own
    // word (does it have the image now?) decides.
    if exists(engine, reference).await? {
        eprintln!("pulled {reference}");
        return Ok(());
    }
    bail!(failure.unwrap_or_else(|| "the engine does not have the image after the pull".to_owned()))
}

/// The registry host of a repository as the docker CLI reads it: the first component
/// when it looks like a host (a dot, a port or `localhost`), else Docker Hub.
fn registry_of(repository: &str) -> &str {
    match repository.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The login `docker login` stored for `registry` in the Docker config (`auths`), as
/// `docker pull` would send it. Credential helpers (`credsStore`, `credHelpers`) are not
/// run: with one, pull a private image with `docker pull` first.
fn docker_login(registry: &str) -> Option<DockerCredentials> {
    let text = std::fs::read_to_string(docker_config_dir()?.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    let encoded = config["auths"][registry]["auth"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let (username, password) =
        String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some(DockerCredentials {
        username: Some(username),
        password: Some(password),
        serveraddress: Some(registry.to_owned()),
        ..DockerCredentials::default()
    })
}

fn pull_failed(reference: &str, err: anyhow::Error, why: Option<&str>) -> anyhow::Error {
    anyhow::anyhow!(
        "❌ Docker image not found locally and pull from registry failed.\n\n\
         Registry pull attempted: {reference}\n\
         Error: {err:#}\n\n{}\
         To fix this, build the image locally, in a checkout of github.com/stigmer/stigmer:\n  \
         cargo xtask image --local        (or: make build-agent-runner-image)\n\n\
         After building, restart Stigmer server: stigmer server start",
        why.unwrap_or("")
    )
}

/// `repo:tag` or `repo@digest` into the engine's `fromImage` and `tag` (a digest is
/// a tag as far as the pull API goes). A missing tag is `latest`, never "every tag".
fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((repository, digest)) = reference.split_once('@') {
        return (repository, digest);
    }
    match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_names_are_shown_as_docker_shows_them() {
        assert_eq!(familiar("docker.io/library/stigmer-1:local"), "stigmer-1:local");
        assert_eq!(familiar("docker.io/stigmer/agent-runner:v1"), "stigmer/agent-runner:v1");
        assert_eq!(familiar("ghcr.io/stigmer/agent-runner:v1"), "ghcr.io/stigmer/agent-runner:v1");
        assert_eq!(familiar("stigmer-1:local"), "stigmer-1:local");
    }

    #[test]
    fn references_split_into_repository_and_tag_or_digest() {
        assert_eq!(
            split_reference("ghcr.io/stigmer/agent-runner:v1.2.3"),
            ("ghcr.io/stigmer/agent-runner", "v1.2.3")
        );
        assert_eq!(split_reference("127.0.0.1:5000/agent-runner"), ("127.0.0.1:5000/agent-runner", "latest"));
        assert_eq!(split_reference("127.0.0.1:5000/agent-runner:v1"), ("127.0.0.1:5000/agent-runner", "v1"));
        assert_eq!(split_reference("r.io/a@sha256:abc"), ("r.io/a", "sha256:abc"));
    }

    #[test]
    fn the_registry_is_the_first_component_when_it_looks_like_a_host() {
        assert_eq!(registry_of("ghcr.io/stigmer/agent-runner"), "ghcr.io");
        assert_eq!(registry_of("127.0.0.1:5000/agent-runner"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/agent-runner"), "localhost");
        assert_eq!(registry_of("stigmer/agent-runner"), "docker.io");
        assert_eq!(registry_of("python"), "docker.io");
    }
}
