//! Engine discovery against the real engine: the sockets of Colima, OrbStack, Rancher
//! Desktop, Docker Desktop, rootless Docker and Podman and its machines, reached through
//! a real socket that forwards to this machine's engine; a Docker context made by the
//! docker CLI; CONTAINER_HOST; and a socket this user may not use. Checks that need the
//! default socket out of the way run as `nobody`, whom the engine's socket refuses,
//! since root connects to any socket whatever its mode.

use std::{
    os::unix::{
        fs::PermissionsExt,
        net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde_json::Value;
use test_support::{engine::Engine, shell};
use xshell::{cmd, Cmd};

use crate::{on_every_engine, run, run_ok, text, Instance, STIGMER};

on_every_engine!(the_api_version_comes_from_ping_and_never_from_get_version);

/// The engine the tests run against.
const ENGINE_SOCKET: &str = "/var/run/docker.sock";

/// Variables that choose an engine or move its socket: unset, so that each test says
/// exactly what the CLI sees.
const DISCOVERY: [&str; 7] = [
    "DOCKER_HOST",
    "CONTAINER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "XDG_RUNTIME_DIR",
    "TMPDIR",
    "COLIMA_HOME",
];

fn without_discovery_env(mut cmd: Cmd<'_>) -> Cmd<'_> {
    for variable in DISCOVERY {
        cmd = cmd.env_remove(variable);
    }
    cmd
}

/// `stigmer ARGS` as `nobody` (no supplementary groups), with this instance's variables.
fn as_nobody<'a>(instance: &Instance, sh: &'a xshell::Shell, args: &[&str]) -> Cmd<'a> {
    assert!(test_support::on_path("setpriv"), "setpriv is not on PATH: `apt-get install util-linux`");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata("/proc/self").unwrap().uid(),
        0,
        "changing to `nobody` needs root: run the tests as root, as our machines and CI do"
    );
    let cmd = cmd!(sh, "setpriv --reuid=nobody --regid=nogroup --clear-groups {STIGMER} {args...}");
    without_discovery_env(instance.env(cmd))
}

/// A home directory `nobody` may enter.
fn open_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    home
}

/// A unix socket anyone may use at `path` (its directories made, open to all below
/// `home`), each connection forwarded to the engine's socket: what Colima's, OrbStack's
/// or a Podman machine's socket is, a forward to an engine elsewhere. The forwarding
/// threads end with the test binary.
fn forward_to_engine(home: &Path, path: &Path) {
    assert!(Path::new(ENGINE_SOCKET).exists(), "{ENGINE_SOCKET} is missing: run `bash ci/setup.sh`");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    for dir in path.ancestors().skip(1).take_while(|dir| dir.starts_with(home)) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let listener = UnixListener::bind(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let engine = UnixStream::connect(ENGINE_SOCKET).unwrap();
            for (mut from, mut to) in
                [(client.try_clone().unwrap(), engine.try_clone().unwrap()), (engine, client)]
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}

fn status_json(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "status failed ({}):\n{}", output.status, text(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(output)))
}

#[test]
fn the_sockets_of_colima_orbstack_rancher_desktop_and_podman_machines_are_found() {
    let instance = Instance::new(Engine::Docker20);
    run_ok(instance.stigmer(&["server", "start"]));
    let sh = shell();
    // Each where its tool puts it, relative to HOME; XDG_RUNTIME_DIR is HOME/run and
    // TMPDIR is HOME/tmp.
    let layouts = [
        ".docker/run/docker.sock",
        ".colima/default/docker.sock",
        // Another Colima profile, found by listing the profiles.
        ".colima/work/docker.sock",
        ".orbstack/run/docker.sock",
        ".rd/docker.sock",
        "run/docker.sock",
        "run/podman/podman.sock",
        ".local/share/containers/podman/machine/podman-machine-default/podman.sock",
        ".local/share/containers/podman/machine/dev/podman.sock",
        "tmp/podman/podman-machine-default-api.sock",
    ];
    for layout in layouts {
        let home = open_home();
        let socket = home.path().join(layout);
        forward_to_engine(home.path(), &socket);
        let output = run(as_nobody(&instance, &sh, &["server", "status", "--json"])
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", home.path().join("run"))
            .env("TMPDIR", home.path().join("tmp")));
        let status = status_json(&output);
        assert_eq!(status["engine"], format!("unix://{}", socket.display()), "{layout}");
        assert_eq!(status["state"], "running", "{layout}");
        assert_eq!(status["ready"], true, "{layout}");
    }
}

#[test]
fn the_current_docker_context_is_used_before_the_default_socket() {
    let instance = Instance::new(Engine::Docker20);
    run_ok(instance.stigmer(&["server", "start"]));
    let sh = shell();
    let dir = tempfile::tempdir().unwrap();
    // The context's socket is a link to the engine's: a name of its own, so that the
    // answer shows which address was used.
    let socket = dir.path().join("context.sock");
    std::os::unix::fs::symlink(ENGINE_SOCKET, &socket).unwrap();
    // Made by the docker CLI itself, as a user's would be.
    let config = dir.path().join("docker-config");
    let host = format!("host=unix://{}", socket.display());
    cmd!(sh, "docker --config {config} context create stigmer-it --docker {host}")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .unwrap();
    cmd!(sh, "docker --config {config} context use stigmer-it")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .unwrap();

    let status = status_json(&run(without_discovery_env(instance.stigmer(&["server", "status", "--json"]))
        .env("DOCKER_CONFIG", &config)));
    assert_eq!(status["engine"], format!("unix://{}", socket.display()));
    assert_eq!(status["state"], "running");
    // DOCKER_CONTEXT picks another one: `default` is the default socket.
    let status = status_json(&run(without_discovery_env(instance.stigmer(&["server", "status", "--json"]))
        .env("DOCKER_CONFIG", &config)
        .env("DOCKER_CONTEXT", "default")));
    assert_eq!(status["engine"], format!("unix://{ENGINE_SOCKET}"));
}

#[test]
fn container_host_is_used_when_docker_host_is_not_set() {
    let instance = Instance::new(Engine::Docker20);
    run_ok(instance.stigmer(&["server", "start"]));
    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("podman.sock");
    std::os::unix::fs::symlink(ENGINE_SOCKET, &socket).unwrap();
    let container_host = format!("unix://{}", socket.display());
    let status = status_json(&run(without_discovery_env(instance.stigmer(&["server", "status", "--json"]))
        .env("CONTAINER_HOST", &container_host)));
    assert_eq!(status["engine"], container_host.as_str());
    assert_eq!(status["state"], "running");

    // DOCKER_HOST wins, and then nothing else is tried.
    let output = run(without_discovery_env(instance.stigmer(&["server", "status"]))
        .env("CONTAINER_HOST", &container_host)
        .env("DOCKER_HOST", "unix:///nonexistent.sock"));
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.contains("  - unix:///nonexistent.sock (DOCKER_HOST): no such socket"), "{shown}");
    assert!(!shown.contains(&container_host), "{shown}");
}

/// The classic failure: the engine runs, but this user is not in its socket's group,
/// and "Docker is not running" sends them off to install it again.
#[test]
fn permission_denied_on_the_engine_socket_names_the_group_to_join() {
    let sh = shell();
    let mode = cmd!(sh, "stat --dereference --format %a {ENGINE_SOCKET}").read().unwrap();
    assert!(
        mode.ends_with('0'),
        "{ENGINE_SOCKET} has mode {mode}: this test needs it closed to others (0660, as dockerd makes it)"
    );
    let group = cmd!(sh, "stat --dereference --format %G {ENGINE_SOCKET}").read().unwrap();
    let instance = Instance::without_image(Engine::Docker20);
    let home = open_home();
    let output = run(as_nobody(&instance, &sh, &["server", "status"]).env("HOME", home.path()));
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let shown = text(&output);
    assert!(shown.starts_with("❌ Docker's socket is there, but this user may not use it."), "{shown}");
    assert!(
        shown.contains(&format!(
            "Found, but could not use:\n  - permission denied on {ENGINE_SOCKET} (group {group}): run \
             `sudo usermod -aG {group} $USER` and log in again\n"
        )),
        "{shown}"
    );
    assert!(!shown.contains("brew install"), "installing Docker again would not help: {shown}");
    assert!(
        shown.contains(&format!(
            "  - unix://{ENGINE_SOCKET} (the default socket): permission denied (group {group})"
        )),
        "{shown}"
    );
}

/// A socket at `path` in front of `engine`'s, forwarding each connection and keeping
/// the request lines the CLI sends. With `hide_api_version`, the engine's `API-Version`
/// response headers reach the CLI renamed, as from an engine that sends none.
fn recording_forward(engine: Engine, path: &Path, hide_api_version: bool) -> Arc<Mutex<Vec<u8>>> {
    let host = engine.host();
    let engine_socket = PathBuf::from(host.strip_prefix("unix://").unwrap());
    let sent = Arc::new(Mutex::new(Vec::new()));
    let listener = UnixListener::bind(path).unwrap();
    let recorded = Arc::clone(&sent);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut to_engine = UnixStream::connect(&engine_socket).unwrap();
            let mut from_engine = to_engine.try_clone().unwrap();
            let mut to_client = client.try_clone().unwrap();
            let recorded = Arc::clone(&recorded);
            std::thread::spawn(move || {
                let mut buffer = [0; 65536];
                while let Ok(read @ 1..) = std::io::Read::read(&mut client, &mut buffer) {
                    recorded.lock().unwrap().extend_from_slice(&buffer[..read]);
                    if std::io::Write::write_all(&mut to_engine, &buffer[..read]).is_err() {
                        break;
                    }
                }
                let _ = to_engine.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let mut buffer = [0; 65536];
                while let Ok(read @ 1..) = std::io::Read::read(&mut from_engine, &mut buffer) {
                    let chunk = &mut buffer[..read];
                    if hide_api_version {
                        // Same length, so Content-Length and framing stay true.
                        const HEADER: &[u8] = b"\r\napi-version:";
                        for at in 0..chunk.len().saturating_sub(HEADER.len()) {
                            if chunk[at..at + HEADER.len()].eq_ignore_ascii_case(HEADER) {
                                chunk[at + 2..at + HEADER.len()].copy_from_slice(b"x-api-versi:");
                            }
                        }
                    }
                    if std::io::Write::write_all(&mut to_client, chunk).is_err() {
                        break;
                    }
                }
                let _ = to_client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    sent
}

/// The paths `stigmer server status` requests (with no agent-runner there) through a
/// `recording_forward` in front of `engine`, in order.
fn status_requests(engine: Engine, hide_api_version: bool) -> Vec<String> {
    let instance = Instance::without_image(engine);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("engine.sock");
    let sent = recording_forward(engine, &socket, hide_api_version);
    let output = run(instance
        .stigmer(&["server", "status"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display())));
    assert_eq!(output.status.code(), Some(4), "{}", text(&output));
    assert!(text(&output).contains("agent-runner: missing"), "{}", text(&output));
    let sent = String::from_utf8_lossy(&sent.lock().unwrap()).into_owned();
    sent.lines()
        .filter_map(|line| {
            let (method, rest) = line.split_once(' ')?;
            let path = rest.strip_suffix(" HTTP/1.1")?;
            ["GET", "POST", "DELETE", "HEAD", "PUT"].contains(&method).then(|| path.to_owned())
        })
        .collect()
}

/// Regression: Podman 4.3 takes 0.3 s to answer `GET /version`, which `status` asked on
/// every call to agree on a version.
fn the_api_version_comes_from_ping_and_never_from_get_version(engine: Engine) {
    let paths = status_requests(engine, false);
    assert!(paths.iter().any(|path| path.ends_with("/_ping")), "{paths:?}");
    assert!(!paths.iter().any(|path| path.ends_with("/version")), "{paths:?}");
}

#[test]
fn without_an_api_version_header_the_version_is_asked_with_get_version() {
    let paths = status_requests(Engine::Docker20, true);
    assert!(paths.iter().any(|path| path.ends_with("/version")), "{paths:?}");
}
