//! Which agent-runner image runs, and getting it into the engine: `choose` decides,
//! `ensure` makes it present. In order: `--image` or `STIGMER_AGENT_RUNNER_IMAGE`
//! (pulled when missing); for a released CLI (one that pins a digest) always that
//! digest, `<registry>/agent-runner@sha256:...`; for a developer's or a snapshot's CLI,
//! `<name>:local` when `cargo xtask image --local` built it (its `LOCAL_BUILD_LABEL`),
//! else the published tag of its version (`build_info::published_image`). A pull never
//! creates `<name>:local`: an upgraded CLI never runs the image an older one pulled.
//! `STIGMER_REGISTRY` points at another registry (tests use their own). A registry that
//! needs a login gets the one `docker login` wrote into the Docker config.

use std::collections::HashMap;

use anyhow::bail;
use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use crate::engine::{docker_config_dir, is_not_found, root_cause, Engine};

pub(crate) const VERSION_LABEL: &str = "org.opencontainers.image.version";

/// The label (key and value) `cargo xtask image --local` puts on its builds.
pub(crate) const LOCAL_BUILD_LABEL: (&str, &str) = ("dev.stigmer.local-build", "cargo xtask image --local");

/// The image this CLI runs, as far as it can tell without pulling: `local` is what the
/// engine has under `<name>:local` (its labels), if anything.
pub(crate) fn choose(
    name: &str,
    explicit: Option<String>,
    pinned_digest: Option<&str>,
    local: Option<&HashMap<String, String>>,
) -> Choice {
    if let Some(reference) = explicit {
        return Choice::Explicit(reference);
    }
    let registry =
        std::env::var("STIGMER_REGISTRY").unwrap_or_else(|_| crate::build_info::DEFAULT_REGISTRY.to_owned());
    let repository = format!("{}/agent-runner", registry.trim_end_matches('/'));
    let published =
        crate::build_info::published_image(&repository, crate::build_info::version(), pinned_digest);
    let local_build = local.is_some_and(|labels| {
        labels.get(LOCAL_BUILD_LABEL.0).map(String::as_str) == Some(LOCAL_BUILD_LABEL.1)
    });
    match (pinned_digest, local_build) {
        // A released CLI runs what it was released with, whatever else is local.
        (Some(_), _) | (None, false) => Choice::Published(published),
        (None, true) => Choice::Local(format!("{name}:local")),
    }
}

/// What `choose` picked.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    Explicit(String),
    /// `<name>:local`, built by `cargo xtask image --local`.
    Local(String),
    /// The published image of this CLI: by digest when pinned, else by version tag.
    Published(String),
}

impl Choice {
    pub(crate) fn reference(&self) -> &str {
        match self {
            Choice::Explicit(reference) | Choice::Local(reference) | Choice::Published(reference) => {
                reference
            }
        }
    }
}

/// What `ensure` would run now, without pulling anything.
pub(crate) async fn would_run(
    engine: &Engine,
    name: &str,
    explicit: Option<String>,
    pinned_digest: Option<&str>,
) -> anyhow::Result<Choice> {
    let local = labels(engine, &format!("{name}:local")).await?;
    Ok(choose(name, explicit, pinned_digest, local.as_ref()))
}

/// The image to run, resolved and present in the engine.
pub(crate) async fn ensure(
    engine: &Engine,
    name: &str,
    explicit: Option<String>,
    pinned_digest: Option<&str>,
) -> anyhow::Result<String> {
    let local = format!("{name}:local");
    let local_labels = labels(engine, &local).await?;
    let choice = choose(name, explicit, pinned_digest, local_labels.as_ref());
    match &choice {
        Choice::Local(local) => {
            let version = local_labels.as_ref().and_then(|labels| labels.get(VERSION_LABEL));
            let version = version.map_or("unknown", String::as_str);
            if version != crate::build_info::version() {
                eprintln!(
                    "note: {local} is agent-runner {version}, this CLI is {}: rebuild it with \
                     `cargo xtask image --local`, or remove it (`docker image rm {local}`) to run the \
                     published image",
                    crate::build_info::version()
                );
            }
        }
        Choice::Published(published) if local_labels.is_some() => {
            let why = match pinned_digest {
                Some(_) => "this released CLI runs the image it was released with",
                None => "it was not built by `cargo xtask image --local`",
            };
            eprintln!("note: not running {local} ({why}); running {published}");
        }
        Choice::Explicit(_) | Choice::Published(_) => {}
    }
    let reference = choice.reference().to_owned();
    if exists(engine, &reference).await? {
        return Ok(reference);
    }
    let why = match &choice {
        Choice::Published(_) if local_labels.is_none() => Some(format!("{local} not found; ")),
        _ => None,
    };
    eprintln!("{}pulling {reference}", why.unwrap_or_default());
    // A snapshot's tag is never pushed: say so rather than leave the user to wonder.
    let snapshot = matches!(choice, Choice::Published(_))
        && pinned_digest.is_none()
        && crate::build_info::is_snapshot(crate::build_info::version());
    let why = snapshot.then(|| {
        format!(
            "This CLI is a snapshot build ({}): snapshot images are never published.\n",
            crate::build_info::version()
        )
    });
    pull(engine, &reference).await.map_err(|err| pull_failed(&reference, err, why.as_deref()))?;
    Ok(reference)
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

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_released_cli_runs_its_pinned_digest_whatever_is_local() {
        // Found by reading: a pull tagged the image `:local`, and every later start ran
        // `:local` first, so an upgraded CLI kept running the old release's image.
        let digest = "sha256:0123";
        let built_here = labels(&[LOCAL_BUILD_LABEL]);
        for local in [None, Some(&built_here)] {
            let choice = choose("stigmer", None, Some(digest), local);
            assert!(
                matches!(&choice, Choice::Published(r) if r.ends_with("/agent-runner@sha256:0123")),
                "{choice:?}"
            );
        }
    }

    #[test]
    fn a_developers_cli_runs_local_only_when_xtask_built_it() {
        let built_here = labels(&[LOCAL_BUILD_LABEL]);
        assert_eq!(choose("s", None, None, Some(&built_here)), Choice::Local("s:local".to_owned()));
        let someone_elses = labels(&[(VERSION_LABEL, "1.0.0")]);
        let choice = choose("s", None, None, Some(&someone_elses));
        assert!(matches!(&choice, Choice::Published(r) if r.contains("/agent-runner:v")), "{choice:?}");
        assert_eq!(choose("s", Some("x:y".into()), None, Some(&built_here)), Choice::Explicit("x:y".into()));
    }

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
