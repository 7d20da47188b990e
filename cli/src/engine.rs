//! Finding a container engine and connecting to it with bollard. The first address in
//! this order that answers a ping is the engine:
//!
//! 1. `DOCKER_HOST`, else `CONTAINER_HOST` (Podman's): when one is set it is the only
//!    address tried, as the docker and podman CLIs do.
//! 2. The current Docker context's host (`DOCKER_CONTEXT`, else `currentContext`).
//! 3. `/var/run/docker.sock`, then rootless Docker's `$XDG_RUNTIME_DIR/docker.sock`.
//! 4. Docker Desktop's `~/.docker/run/docker.sock`.
//! 5. Colima: `$COLIMA_HOME` (default `~/.colima`)`/default/docker.sock`, then every
//!    other profile's, by name.
//! 6. OrbStack's `~/.orbstack/run/docker.sock`, Rancher Desktop's `~/.rd/docker.sock`.
//! 7. Podman: rootless `$XDG_RUNTIME_DIR/podman/podman.sock`, rootful
//!    `/run/podman/podman.sock`.
//! 8. Podman machines: Podman 4's `~/.local/share/containers/podman/machine/<name>/podman.sock`
//!    and Podman 5's `$TMPDIR/podman/<name>-api.sock` (macOS), `podman-machine-default` first.
//!
//! On Windows, after 1 and 2 (`DOCKER_HOST` may be `npipe://` or `tcp://`): Docker
//! Desktop's named pipe `npipe:////./pipe/docker_engine` (Rancher Desktop serves the same
//! pipe), then Podman machine's `npipe:////./pipe/podman-machine-default`. Contexts and
//! the Docker config are under `%USERPROFILE%\.docker`.
//!
//! A socket counts only once it answers: a file that exists is not an engine that runs
//! ("Docker isn't running when it is" is the classic failure). One that is there but
//! refuses this user is named in the message with the fix (the group to join).

use std::{fmt, path::PathBuf, time::Duration};

#[cfg(unix)]
use std::path::Path;

use bollard::{ClientVersion, Docker};

pub(crate) struct Engine {
    pub(crate) docker: Docker,
    /// The address that answered, for messages.
    pub(crate) endpoint: String,
}

/// An address to try, and where it comes from, for the message.
#[derive(Debug, PartialEq)]
struct Candidate {
    endpoint: String,
    source: String,
}

/// Why an address did not give us an engine.
#[derive(Debug)]
enum Failure {
    /// Nothing is at that path.
    #[cfg_attr(windows, allow(dead_code))]
    Missing,
    /// No such named pipe (Windows).
    #[cfg_attr(not(windows), allow(dead_code))]
    MissingPipe,
    /// A socket is there, but this user may not connect to it.
    #[cfg_attr(windows, allow(dead_code))]
    PermissionDenied { path: String, owner: SocketGroup },
    /// Something is there, but no engine answers through it.
    Unusable(String),
}

/// The group that owns a socket, which a user joins to be let in.
#[derive(Debug)]
#[cfg_attr(windows, allow(dead_code))]
enum SocketGroup {
    Named {
        name: String,
        gid: u32,
    },
    /// A gid /etc/group does not name (a directory service's, say).
    Unnamed(u32),
    /// The socket cannot even be looked at: a directory on its path is closed.
    Unknown,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Missing => f.write_str("no such socket"),
            Failure::MissingPipe => f.write_str("no such pipe"),
            Failure::PermissionDenied { owner: SocketGroup::Named { name, .. }, .. } => {
                write!(f, "permission denied (group {name})")
            }
            Failure::PermissionDenied { owner: SocketGroup::Unnamed(gid), .. } => {
                write!(f, "permission denied (gid {gid})")
            }
            Failure::PermissionDenied { owner: SocketGroup::Unknown, .. } => f.write_str("permission denied"),
            Failure::Unusable(why) => f.write_str(why),
        }
    }
}

impl Failure {
    /// The line for a socket that is there but gave no engine, with what to do about it.
    fn found(&self, candidate: &Candidate) -> Option<String> {
        match self {
            Failure::Missing | Failure::MissingPipe => None,
            Failure::Unusable(why) => Some(format!("{} ({}): {why}", candidate.endpoint, candidate.source)),
            Failure::PermissionDenied { path, owner } => Some(match owner {
                SocketGroup::Named { gid: 0, .. } => format!(
                    "permission denied on {path} (group root): only root may use it; run stigmer \
                     as root, or start a rootless engine (rootless Docker, or `podman system service`)"
                ),
                SocketGroup::Named { name, .. } => format!(
                    "permission denied on {path} (group {name}): run `sudo usermod -aG {name} $USER` \
                     and log in again"
                ),
                SocketGroup::Unnamed(gid) => format!(
                    "permission denied on {path} (gid {gid}, which /etc/group does not name): ask \
                     for membership of that group, then log in again"
                ),
                SocketGroup::Unknown => {
                    format!("permission denied on {path}: a directory on its path is closed to this user")
                }
            }),
        }
    }
}

/// No engine answered; `Display` is the whole message for the user.
#[derive(Debug)]
pub(crate) struct EngineUnreachable {
    tried: Vec<(Candidate, Failure)>,
}

impl std::error::Error for EngineUnreachable {}

impl fmt::Display for EngineUnreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let denied =
            self.tried.iter().any(|(_, failure)| matches!(failure, Failure::PermissionDenied { .. }));
        if denied {
            writeln!(
                f,
                "❌ Docker's socket is there, but this user may not use it. Agent-runner requires Docker.\n"
            )?;
        } else {
            writeln!(f, "❌ Docker is not running. Agent-runner requires Docker.\n")?;
        }
        let found: Vec<String> =
            self.tried.iter().filter_map(|(candidate, failure)| failure.found(candidate)).collect();
        if !found.is_empty() {
            writeln!(f, "Found, but could not use:")?;
            for line in found {
                writeln!(f, "  - {line}")?;
            }
            writeln!(f)?;
        }
        writeln!(f, "Tried, in this order:")?;
        for (candidate, failure) in &self.tried {
            writeln!(f, "  - {} ({}): {failure}", candidate.endpoint, candidate.source)?;
        }
        if denied {
            // Installing Docker again would not help.
            return write!(f, "\nThen run again: stigmer server start");
        }
        write!(
            f,
            "\nPlease start Docker Desktop or install Docker:\n  \
             - macOS:   brew install --cask docker\n  \
             - Linux:   curl -fsSL https://get.docker.com -o get-docker.sh && sudo sh get-docker.sh\n  \
             - Windows: Download from https://www.docker.com/products/docker-desktop\n\
             Colima, OrbStack, Rancher Desktop and Podman work too (their sockets are found\n\
             automatically; for Podman run `podman system service --time=0 &` or `podman machine\n\
             start`), or point DOCKER_HOST at any engine's socket.\n\n\
             After installing Docker, restart Stigmer server: stigmer server start"
        )
    }
}

pub(crate) async fn connect() -> Result<Engine, EngineUnreachable> {
    let mut tried = Vec::new();
    for candidate in candidates(&process_env) {
        match try_endpoint(&candidate.endpoint).await {
            Ok(docker) => {
                let docker = agree_on_version(docker, &candidate.endpoint).await;
                return Ok(Engine { docker, endpoint: candidate.endpoint });
            }
            Err(failure) => tried.push((candidate, failure)),
        }
    }
    Err(EngineUnreachable { tried })
}

async fn try_endpoint(endpoint: &str) -> Result<Docker, Failure> {
    #[cfg(unix)]
    if let Some(path) = endpoint.strip_prefix("unix://") {
        check_socket(Path::new(path))?;
    }
    #[cfg(windows)]
    if let Some(path) = endpoint.strip_prefix("npipe://") {
        check_pipe(&path.replace('/', "\\"))?;
    }
    let docker = Docker::connect_with_host(endpoint).map_err(|err| Failure::Unusable(err.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(3), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(err)) => Err(Failure::Unusable(root_cause(&err))),
        Err(_) => Err(Failure::Unusable("no answer within 3 s".to_owned())),
    }
}

/// The client speaking the lower of bollard's API version and the engine's. Docker
/// refuses a version above its own, and Docker 29 one below 1.44, so the version is
/// agreed on, never fixed. `_ping`'s `API-Version` header names the engine's in one cheap
/// request; `GET /version` (bollard's `negotiate_version`) is asked only when the header
/// is missing, because Podman 4.3 gathers host facts to answer it (0.3 s, three times
/// `status`'s budget). When neither answers, bollard's own version is tried as it is.
/// (bollard 0.21.1 builds request paths with `Url::join`, which drops the `/vX.Y`
/// prefix, so engines answer at their own current version whatever is agreed here: the
/// agreement is kept for the bollard that sends it.)
async fn agree_on_version(docker: Docker, endpoint: &str) -> Docker {
    let ours = docker.client_version();
    match ping_api_version(endpoint).await {
        Some(theirs) if theirs >= ours => docker,
        Some(theirs) => with_version(endpoint, &theirs).unwrap_or(docker),
        None => docker.clone().negotiate_version().await.unwrap_or(docker),
    }
}

/// A client for `endpoint` (an address `try_endpoint` accepted) at `version`, as
/// `Docker::connect_with_host` makes it.
fn with_version(endpoint: &str, version: &ClientVersion) -> Option<Docker> {
    const TIMEOUT_SECS: u64 = 120; // bollard's default
    #[cfg(unix)]
    if endpoint.starts_with("unix://") {
        return Docker::connect_with_unix(endpoint, TIMEOUT_SECS, version).ok();
    }
    if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        return Docker::connect_with_http(endpoint, TIMEOUT_SECS, version).ok();
    }
    None
}

/// The engine's API version from `_ping`'s `API-Version` header: a plain request over
/// the connector bollard uses for that address (bollard's `ping()` returns the body
/// alone). `None` when the address is of another kind, or the header is missing or
/// unreadable.
async fn ping_api_version(endpoint: &str) -> Option<ClientVersion> {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};

    let request = |uri: hyper::Uri| hyper::Request::get(uri).body(Empty::<Bytes>::new()).ok();
    let response = if let Some(path) = endpoint.strip_prefix("unix://") {
        #[cfg(unix)]
        {
            let uri: hyper::Uri = hyperlocal::Uri::new(path, "/_ping").into();
            let client = Client::builder(TokioExecutor::new()).build(hyperlocal::UnixConnector);
            client.request(request(uri)?)
        }
        // Windows: Docker Desktop's named pipe; `GET /version` agrees instead.
        #[cfg(not(unix))]
        {
            let _ = path;
            return None;
        }
    } else if let Some(address) = endpoint.strip_prefix("tcp://").or_else(|| endpoint.strip_prefix("http://"))
    {
        let uri: hyper::Uri = format!("http://{address}/_ping").parse().ok()?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        client.request(request(uri)?)
    } else {
        return None;
    };
    let response = tokio::time::timeout(Duration::from_secs(3), response).await.ok()?.ok()?;
    parse_api_version(response.headers().get("api-version")?.to_str().ok()?)
}

/// `1.41` as a version; anything else is `None`.
fn parse_api_version(value: &str) -> Option<ClientVersion> {
    let (major, minor) = value.trim().split_once('.')?;
    Some(ClientVersion { major_version: major.parse().ok()?, minor_version: minor.parse().ok()? })
}

/// Opens the pipe once, as a client, to tell the reasons apart as `check_socket` does:
/// bollard's error for each is a string. `path` is `\\.\pipe\<name>`.
#[cfg(windows)]
fn check_pipe(path: &str) -> Result<(), Failure> {
    // winerror.h: the server is between connections; the pipe is there.
    const ERROR_PIPE_BUSY: i32 = 231;
    let err = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    match err.kind() {
        std::io::ErrorKind::NotFound => Err(Failure::MissingPipe),
        // Docker Desktop's pipe admits Administrators and the docker-users group.
        std::io::ErrorKind::PermissionDenied => Err(Failure::Unusable(
            "access denied: add yourself to the docker-users group (`net localgroup docker-users \
             <you> /add` as an administrator), then sign out and in again"
                .to_owned(),
        )),
        _ if err.raw_os_error() == Some(ERROR_PIPE_BUSY) => Ok(()),
        _ => Err(Failure::Unusable(err.to_string())),
    }
}

/// Connects once, without HTTP, to tell the reasons apart: bollard's error for each is
/// a string. A local connect takes microseconds, so blocking the runtime is fine.
#[cfg(unix)]
fn check_socket(path: &Path) -> Result<(), Failure> {
    let err = match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    let shown = path.display().to_string();
    match err.kind() {
        std::io::ErrorKind::NotFound => match std::fs::read_link(path) {
            // Colima and others leave their link in place while stopped.
            Ok(target) => Err(Failure::Unusable(format!(
                "a link to {}, which does not exist: the engine behind it is not running",
                target.display()
            ))),
            Err(_) => Err(Failure::Missing),
        },
        std::io::ErrorKind::PermissionDenied => {
            Err(Failure::PermissionDenied { owner: socket_group(path), path: shown })
        }
        std::io::ErrorKind::ConnectionRefused => Err(Failure::Unusable(
            "nothing listens on it (connection refused): the engine is not running".to_owned(),
        )),
        _ => Err(Failure::Unusable(err.to_string())),
    }
}

/// The group of the socket (of a link's target: that is what connect checks), named by
/// /etc/group.
#[cfg(unix)]
fn socket_group(path: &Path) -> SocketGroup {
    use std::os::unix::fs::MetadataExt;
    let Ok(metadata) = std::fs::metadata(path) else { return SocketGroup::Unknown };
    let gid = metadata.gid();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let name = groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)?.parse::<u32>().ok()? == gid).then(|| name.to_owned())
    });
    match name {
        Some(name) => SocketGroup::Named { name, gid },
        None => SocketGroup::Unnamed(gid),
    }
}

/// Every address to try, in the order of the module's list; `env` reads a variable
/// (unset and empty alike are `None`).
fn candidates(env: &dyn Fn(&str) -> Option<String>) -> Vec<Candidate> {
    let candidate = |endpoint: String, source: &str| Candidate { endpoint, source: source.to_owned() };
    for variable in ["DOCKER_HOST", "CONTAINER_HOST"] {
        if let Some(host) = env(variable) {
            return vec![candidate(host, variable)];
        }
    }
    let mut list = Vec::new();
    if let Some((name, host)) = context_host(env) {
        list.push(candidate(host, &format!("Docker context {name}")));
    }
    list.extend(local_engines(env));
    let mut unique: Vec<Candidate> = Vec::new();
    for candidate in list {
        if !unique.iter().any(|seen| seen.endpoint == candidate.endpoint) {
            unique.push(candidate);
        }
    }
    unique
}

/// The named pipes of Windows' engines, in the module's order: no socket of the list
/// above exists there.
#[cfg(windows)]
fn local_engines(_env: &dyn Fn(&str) -> Option<String>) -> Vec<Candidate> {
    let pipe = |name: &str, source: &str| Candidate {
        endpoint: format!("npipe:////./pipe/{name}"),
        source: source.to_owned(),
    };
    vec![
        pipe("docker_engine", "Docker Desktop"),
        pipe(DEFAULT_MACHINE, &format!("Podman machine {DEFAULT_MACHINE}")),
    ]
}

/// The sockets of the module's list from 3 on.
#[cfg(unix)]
fn local_engines(env: &dyn Fn(&str) -> Option<String>) -> Vec<Candidate> {
    let candidate = |endpoint: String, source: &str| Candidate { endpoint, source: source.to_owned() };
    let unix = |path: &Path, source: &str| candidate(format!("unix://{}", path.display()), source);
    let home = crate::home::user_home(env);
    let runtime = env("XDG_RUNTIME_DIR").map(PathBuf::from);
    let mut list = Vec::new();
    list.push(unix(Path::new("/var/run/docker.sock"), "the default socket"));
    if let Some(runtime) = &runtime {
        list.push(unix(&runtime.join("docker.sock"), "rootless Docker"));
    }
    if let Some(home) = &home {
        list.push(unix(&home.join(".docker/run/docker.sock"), "Docker Desktop"));
        let colima = env("COLIMA_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".colima"));
        // Colima's own directories (`_lima`, `_templates`) start with an underscore.
        for profile in
            first_then_sorted("default", subdirectories(&colima).filter(|name| !name.starts_with('_')))
        {
            list.push(unix(&colima.join(&profile).join("docker.sock"), &format!("Colima profile {profile}")));
        }
        list.push(unix(&home.join(".orbstack/run/docker.sock"), "OrbStack"));
        list.push(unix(&home.join(".rd/docker.sock"), "Rancher Desktop"));
    }
    if let Some(runtime) = &runtime {
        list.push(unix(&runtime.join("podman/podman.sock"), "rootless Podman"));
    }
    list.push(unix(Path::new("/run/podman/podman.sock"), "Podman"));
    // Machines are listed only where their socket is (a link counts): most machines
    // have none, and a list of guesses would bury what was found.
    let is_there = |path: &Path| std::fs::symlink_metadata(path).is_ok();
    if let Some(home) = &home {
        let machines = home.join(".local/share/containers/podman/machine");
        for machine in first_then_sorted(DEFAULT_MACHINE, subdirectories(&machines)) {
            let socket = machines.join(&machine).join("podman.sock");
            if is_there(&socket) {
                list.push(unix(&socket, &format!("Podman machine {machine}")));
            }
        }
    }
    if let Some(tmp) = env("TMPDIR").map(PathBuf::from) {
        let dir = tmp.join("podman");
        let names = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix("-api.sock").map(str::to_owned));
        for machine in first_then_sorted(DEFAULT_MACHINE, names) {
            let socket = dir.join(format!("{machine}-api.sock"));
            if is_there(&socket) {
                list.push(unix(&socket, &format!("Podman machine {machine}")));
            }
        }
    }
    list
}

const DEFAULT_MACHINE: &str = "podman-machine-default";

/// The names of the directories in `dir` (none when it cannot be read).
#[cfg(unix)]
fn subdirectories(dir: &Path) -> impl Iterator<Item = String> {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|entry| {
        entry.file_type().ok()?.is_dir().then(|| entry.file_name().to_str().map(str::to_owned))?
    })
}

/// `first`, then the other names in order: the default profile or machine is always
/// tried first, and the rest in an order that does not depend on the file system.
#[cfg(unix)]
fn first_then_sorted(first: &str, names: impl Iterator<Item = String>) -> Vec<String> {
    let mut others: Vec<String> = names.filter(|name| name != first).collect();
    others.sort();
    let mut all = vec![first.to_owned()];
    all.extend(others);
    all
}

/// A variable of this process, unset and empty alike `None` (the docker CLI's reading).
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// `$DOCKER_CONFIG`, else `~/.docker` (`%USERPROFILE%\.docker` on Windows): where the docker CLI keeps contexts and logins.
pub(crate) fn docker_config_dir() -> Option<PathBuf> {
    config_dir(&process_env)
}

fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(crate::home::user_home(env)?.join(".docker")),
    }
}

/// The name and host of the current Docker context (`DOCKER_CONTEXT`, else
/// `currentContext` in the Docker config), read from `contexts/meta/*/meta.json` (the
/// directory is the name's SHA-256; reading them all saves a hash): bollard does not
/// read contexts, and Docker Desktop and Colima users live in them.
fn context_host(env: &dyn Fn(&str) -> Option<String>) -> Option<(String, String)> {
    let config_dir = config_dir(env)?;
    let name = match env("DOCKER_CONTEXT") {
        Some(name) => name,
        None => {
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
            let host = meta["Endpoints"]["docker"]["Host"].as_str()?.to_owned();
            return Some((name, host));
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

// The tests make sockets and links: Unix's. The Windows list is run under Wine
// (xtask/tests/it/windows.rs).
#[cfg(all(test, unix))]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        move |name| vars.get(name).cloned()
    }

    fn listed(candidates: &[Candidate]) -> Vec<String> {
        candidates.iter().map(|c| format!("{} ({})", c.endpoint, c.source)).collect()
    }

    #[test]
    fn the_api_version_header_reads_as_major_and_minor() {
        let read = |value| parse_api_version(value).map(|v| (v.major_version, v.minor_version));
        assert_eq!(read("1.41"), Some((1, 41)));
        assert_eq!(read(" 1.53 "), Some((1, 53)));
        for unreadable in ["", "1", "1.x", "v1.41", "1.41.2"] {
            assert_eq!(read(unreadable), None, "{unreadable:?}");
        }
    }

    #[test]
    fn engines_are_tried_in_the_documented_order() {
        let home = tempfile::tempdir().unwrap();
        let home_path = home.path().display().to_string();
        let tmp = tempfile::tempdir().unwrap();
        for dir in [".colima/work", ".colima/alpha", ".colima/_lima", ".colima/_templates"] {
            std::fs::create_dir_all(home.path().join(dir)).unwrap();
        }
        let machines = home.path().join(".local/share/containers/podman/machine");
        for machine in ["zeta", "podman-machine-default", "qemu"] {
            std::fs::create_dir_all(machines.join(machine)).unwrap();
        }
        // Only machines with a socket are listed ("qemu" holds disk images).
        std::fs::write(machines.join("zeta/podman.sock"), "").unwrap();
        std::os::unix::fs::symlink("/nowhere", machines.join("podman-machine-default/podman.sock")).unwrap();
        std::fs::create_dir_all(tmp.path().join("podman")).unwrap();
        std::fs::write(tmp.path().join("podman/podman-machine-default-api.sock"), "").unwrap();
        std::fs::write(tmp.path().join("podman/podman-machine-default.sock"), "").unwrap();
        let env = env_of(&[
            ("HOME", home_path.clone()),
            ("XDG_RUNTIME_DIR", "/run/user/1000".to_owned()),
            ("TMPDIR", tmp.path().display().to_string()),
        ]);
        let tmp = tmp.path().display();
        assert_eq!(
            listed(&candidates(&env)),
            [
                "unix:///var/run/docker.sock (the default socket)".to_owned(),
                "unix:///run/user/1000/docker.sock (rootless Docker)".to_owned(),
                format!("unix://{home_path}/.docker/run/docker.sock (Docker Desktop)"),
                format!("unix://{home_path}/.colima/default/docker.sock (Colima profile default)"),
                format!("unix://{home_path}/.colima/alpha/docker.sock (Colima profile alpha)"),
                format!("unix://{home_path}/.colima/work/docker.sock (Colima profile work)"),
                format!("unix://{home_path}/.orbstack/run/docker.sock (OrbStack)"),
                format!("unix://{home_path}/.rd/docker.sock (Rancher Desktop)"),
                "unix:///run/user/1000/podman/podman.sock (rootless Podman)".to_owned(),
                "unix:///run/podman/podman.sock (Podman)".to_owned(),
                format!(
                    "unix://{home_path}/.local/share/containers/podman/machine/podman-machine-default/podman.sock \
                     (Podman machine podman-machine-default)"
                ),
                format!("unix://{home_path}/.local/share/containers/podman/machine/zeta/podman.sock (Podman machine zeta)"),
                format!("unix://{tmp}/podman/podman-machine-default-api.sock (Podman machine podman-machine-default)"),
            ]
        );
    }

    #[test]
    fn colima_home_moves_the_colima_profiles() {
        let home = tempfile::tempdir().unwrap();
        let colima = tempfile::tempdir().unwrap();
        std::fs::create_dir(colima.path().join("dev")).unwrap();
        let env = env_of(&[
            ("HOME", home.path().display().to_string()),
            ("COLIMA_HOME", colima.path().display().to_string()),
        ]);
        let colima_sockets: Vec<String> =
            listed(&candidates(&env)).into_iter().filter(|line| line.contains("Colima")).collect();
        let colima = colima.path().display();
        assert_eq!(
            colima_sockets,
            [
                format!("unix://{colima}/default/docker.sock (Colima profile default)"),
                format!("unix://{colima}/dev/docker.sock (Colima profile dev)"),
            ]
        );
    }

    #[test]
    fn docker_host_then_container_host_is_the_only_address_tried() {
        let home = ("HOME", "/home/someone".to_owned());
        let docker_host = ("DOCKER_HOST", "tcp://127.0.0.1:2375".to_owned());
        let container_host = ("CONTAINER_HOST", "unix:///run/user/1000/podman/podman.sock".to_owned());
        assert_eq!(
            listed(&candidates(&env_of(&[home.clone(), docker_host.clone(), container_host.clone()]))),
            ["tcp://127.0.0.1:2375 (DOCKER_HOST)"]
        );
        assert_eq!(
            listed(&candidates(&env_of(&[home, container_host]))),
            ["unix:///run/user/1000/podman/podman.sock (CONTAINER_HOST)"]
        );
    }

    #[test]
    fn the_current_docker_context_comes_before_the_default_socket() {
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("config.json"), r#"{"currentContext": "colima"}"#).unwrap();
        // Where `docker context create` puts it: the directory is the name's SHA-256.
        let meta = config
            .path()
            .join("contexts/meta/f24fd3749c1368328e2b149bec149cb6795619f244c5b584e844961215dadd16");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"colima","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///Users/me/.colima/default/docker.sock","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        let env = env_of(&[("DOCKER_CONFIG", config.path().display().to_string())]);
        assert_eq!(
            listed(&candidates(&env))[..2],
            [
                "unix:///Users/me/.colima/default/docker.sock (Docker context colima)".to_owned(),
                "unix:///var/run/docker.sock (the default socket)".to_owned(),
            ]
        );
        // DOCKER_CONTEXT wins over the config file, and `default` is no context at all.
        let env = env_of(&[
            ("DOCKER_CONFIG", config.path().display().to_string()),
            ("DOCKER_CONTEXT", "default".to_owned()),
        ]);
        assert_eq!(listed(&candidates(&env))[0], "unix:///var/run/docker.sock (the default socket)");
    }

    #[test]
    fn a_socket_is_missing_refused_or_a_dangling_link_each_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sock");
        assert!(matches!(check_socket(&missing), Err(Failure::Missing)));

        // A socket left behind by an engine that is gone: nothing listens.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let refused = check_socket(&stale).unwrap_err().to_string();
        assert!(refused.contains("connection refused"), "{refused}");

        let link = dir.path().join("colima.sock");
        std::os::unix::fs::symlink(&missing, &link).unwrap();
        let dangling = check_socket(&link).unwrap_err().to_string();
        assert!(
            dangling.contains(&format!("a link to {}, which does not exist", missing.display())),
            "{dangling}"
        );

        let listening = dir.path().join("listening.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&listening).unwrap();
        assert!(check_socket(&listening).is_ok());
    }

    #[test]
    fn a_sockets_group_is_named_from_etc_group() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        // Our own primary group, named by another reader of /etc/group than ours.
        let expected =
            std::process::Command::new("id").arg("-gn").output().expect("running `id -gn` (coreutils)");
        let expected = String::from_utf8(expected.stdout).unwrap().trim().to_owned();
        match socket_group(&socket) {
            SocketGroup::Named { name, .. } => assert_eq!(name, expected),
            other => panic!("{other:?}"),
        }
        assert!(matches!(socket_group(&dir.path().join("nothing.sock")), SocketGroup::Unknown));
    }

    fn unreachable(failures: Vec<(&str, Failure)>) -> String {
        let tried = failures
            .into_iter()
            .map(|(endpoint, failure)| {
                (
                    Candidate { endpoint: endpoint.to_owned(), source: "the default socket".to_owned() },
                    failure,
                )
            })
            .collect();
        EngineUnreachable { tried }.to_string()
    }

    #[test]
    fn the_message_names_what_was_tried_and_how_to_install() {
        let text = unreachable(vec![
            ("unix:///nowhere.sock", Failure::Missing),
            (
                "unix:///stale.sock",
                Failure::Unusable("nothing listens on it (connection refused)".to_owned()),
            ),
        ]);
        assert!(text.starts_with("❌ Docker is not running."), "{text}");
        assert!(
            text.contains(
                "Found, but could not use:\n  - unix:///stale.sock (the default socket): nothing listens"
            ),
            "{text}"
        );
        assert!(text.contains("  - unix:///nowhere.sock (the default socket): no such socket"), "{text}");
        assert!(text.contains("brew install --cask docker"), "{text}");
    }

    #[test]
    fn permission_denied_names_the_group_to_join() {
        let denied = |owner| Failure::PermissionDenied { path: "/var/run/docker.sock".to_owned(), owner };
        let candidate = Candidate {
            endpoint: "unix:///var/run/docker.sock".to_owned(),
            source: "the default socket".to_owned(),
        };
        let text = unreachable(vec![(
            "unix:///var/run/docker.sock",
            denied(SocketGroup::Named { name: "docker".to_owned(), gid: 106 }),
        )]);
        assert!(text.starts_with("❌ Docker's socket is there, but this user may not use it."), "{text}");
        assert!(
            text.contains(
                "Found, but could not use:\n  - permission denied on /var/run/docker.sock (group docker): run \
                 `sudo usermod -aG docker $USER` and log in again\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "  - unix:///var/run/docker.sock (the default socket): permission denied (group docker)"
        ));
        assert!(!text.contains("brew install"), "installing again would not help: {text}");

        let root = denied(SocketGroup::Named { name: "root".to_owned(), gid: 0 }).found(&candidate).unwrap();
        assert!(root.contains("(group root): only root may use it"), "{root}");
        assert!(!root.contains("usermod"), "{root}");
        let unnamed = denied(SocketGroup::Unnamed(54321)).found(&candidate).unwrap();
        assert!(unnamed.contains("(gid 54321, which /etc/group does not name)"), "{unnamed}");
        let closed = denied(SocketGroup::Unknown).found(&candidate).unwrap();
        assert!(closed.contains("a directory on its path is closed to this user"), "{closed}");
    }
}
