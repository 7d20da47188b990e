//! Finding a container engine and connecting to it with bollard. `DOCKER_HOST` wins
//! when set (as it does for the docker CLI); otherwise the current Docker context, the
//! default socket, rootless Docker, Docker Desktop's socket and Podman's sockets are
//! tried in turn. A socket counts only once it answers a ping: a file that exists is not
//! an engine that runs ("Docker isn't running when it is" is the classic failure).

use std::{fmt, path::PathBuf, time::Duration};

use bollard::Docker;

pub(crate) struct Engine {
    pub(crate) docker: Docker,
    /// The address that answered, for messages.
    pub(crate) endpoint: String,
}

/// No engine answered; `Display` is the whole message for the user.
#[derive(Debug)]
pub(crate) struct EngineUnreachable {
    tried: Vec<(String, String)>,
}

impl std::error::Error for EngineUnreachable {}

impl fmt::Display for EngineUnreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "❌ Docker is not running. Agent-runner requires Docker.\n")?;
        writeln!(f, "Tried:")?;
        for (endpoint, error) in &self.tried {
            writeln!(f, "  - {endpoint}: {error}")?;
        }
        write!(
            f,
            "\nPlease start Docker Desktop or install Docker:\n  \
             - macOS:   brew install --cask docker\n  \
             - Linux:   curl -fsSL https://get.docker.com -o get-docker.sh && sudo sh get-docker.sh\n  \
             - Windows: Download from https://www.docker.com/products/docker-desktop\n\
             Podman works too: run `podman system service --time=0 &` (its socket is found\n\
             automatically), or point DOCKER_HOST at any engine's socket.\n\n\
             After installing Docker, restart Stigmer server: stigmer server start"
        )
    }
}

pub(crate) async fn connect() -> Result<Engine, EngineUnreachable> {
    let mut tried = Vec::new();
    for endpoint in candidates() {
        match try_endpoint(&endpoint).await {
            Ok(docker) => {
                // A no-op on bollard 0.21 for some engines (bollard#736), but cheap.
                let docker = docker.clone().negotiate_version().await.unwrap_or(docker);
                return Ok(Engine { docker, endpoint });
            }
            Err(error) => tried.push((endpoint, error)),
        }
    }
    Err(EngineUnreachable { tried })
}

async fn try_endpoint(endpoint: &str) -> Result<Docker, String> {
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if !std::path::Path::new(path).exists() {
            return Err("no such socket".to_owned());
        }
    }
    let docker = Docker::connect_with_host(endpoint).map_err(|err| err.to_string())?;
    match tokio::time::timeout(Duration::from_secs(3), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(err)) => Err(root_cause(&err)),
        Err(_) => Err("no answer within 3 s".to_owned()),
    }
}

fn candidates() -> Vec<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let Some(host) = env("DOCKER_HOST") {
        return vec![host];
    }
    let mut endpoints = Vec::new();
    endpoints.extend(context_host());
    endpoints.push("unix:///var/run/docker.sock".to_owned());
    if let Some(runtime) = env("XDG_RUNTIME_DIR") {
        endpoints.push(format!("unix://{runtime}/docker.sock"));
        endpoints.push(format!("unix://{runtime}/podman/podman.sock"));
    }
    if let Some(home) = env("HOME") {
        endpoints.push(format!("unix://{home}/.docker/run/docker.sock"));
    }
    endpoints.push("unix:///run/podman/podman.sock".to_owned());
    let mut unique = Vec::new();
    for endpoint in endpoints {
        if !unique.contains(&endpoint) {
            unique.push(endpoint);
        }
    }
    unique
}

/// `$DOCKER_CONFIG`, else `~/.docker`: where the docker CLI keeps contexts and logins.
pub(crate) fn docker_config_dir() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from(std::env::var_os("HOME")?).join(".docker")),
    }
}

/// The host of the current Docker context (`DOCKER_CONTEXT`, else `currentContext` in
/// the Docker config), read from `contexts/meta/*/meta.json`: bollard does not read
/// contexts, and Docker Desktop and colima users live in them.
fn context_host() -> Option<String> {
    let config_dir = docker_config_dir()?;
    let name = match std::env::var("DOCKER_CONTEXT") {
        Ok(name) => name,
        Err(_) => {
            let config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(config_dir.join("config.json")).ok()?).ok()?;
            config["currentContext"].as_str()?.to_owned()
        }
    };
    if name == "default" {
        return None;
    }
    for entry in std::fs::read_dir(config_dir.join("contexts/meta")).ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("meta.json")) else { continue };
        let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if meta["Name"] == name.as_str() {
            return meta["Endpoints"]["docker"]["Host"].as_str().map(str::to_owned);
        }
    }
    None
}

pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Whether a bollard error is the engine's 404 (no such container or image).
pub(crate) fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(err, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_what_was_tried_and_how_to_install() {
        let err = EngineUnreachable { tried: vec![("unix:///nowhere.sock".into(), "no such socket".into())] };
        let text = err.to_string();
        assert!(text.starts_with("❌ Docker is not running."), "{text}");
        assert!(text.contains("  - unix:///nowhere.sock: no such socket"), "{text}");
        assert!(text.contains("brew install --cask docker"), "{text}");
    }
}
