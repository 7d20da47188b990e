//! The Windows CLI as released: `dist`'s zip for x86_64-pc-windows-gnu, and its
//! `stigmer.exe` run under Wine (`test_support::wine`: Debian 13's Wine 10 in a root of
//! its own) against the real Docker Engine 20.10 over a loopback TCP port (`TcpForward`
//! in front of its Unix socket, on 127.0.0.1 only): `DOCKER_HOST=tcp://...`, as a
//! Windows user points it at a remote engine.
//!
//! What Wine cannot carry: Docker Desktop's and Podman machine's named pipes, which no
//! Linux engine serves (Wine has named pipes, but nothing here listens on one): the
//! CLI tries both and says they are missing, and that is all of the pipe path tested.
//!
//! `start` runs as far as a Linux engine allows: it finds the engine, writes the API
//! key file and the workspace under `%USERPROFILE%\.stigmer`, and asks the engine to
//! create the container. There it stops: the bind mount's source is a Windows path
//! (`Z:\...\workspace:/workspace`), which Docker Desktop translates into its VM and a
//! Linux dockerd refuses (`invalid mode: /workspace`: it splits the bind at every
//! colon); the start then removes the key file again. The health wait
//! and the restart policy after it are the Linux lifecycle tests' (cli/tests/it).
//! `status`, `logs` and `stop` run against a container made as Docker Desktop's start
//! would have made it (our labels, this Windows home), running the real agent-runner.

use std::path::{Path, PathBuf};

use test_support::{
    engine::ContainerGuard,
    unique_name,
    wine::{TcpForward, WinDir},
};
use xshell::{cmd, Cmd, Shell};

use crate::{run, run_ok, XTASK};

const VERSION: &str = "1.2.3";

/// One Windows installation: `dist`'s zip and its unpacked `stigmer.exe` in a
/// directory of the Wine root, and a home there.
struct Windows {
    dir: WinDir,
    zip: PathBuf,
    exe: PathBuf,
    home: PathBuf,
}

impl Windows {
    /// Builds the zip (one build for every test: `dist` stamps a copy of it) into
    /// `dist/` of a new directory in the Wine root, and unpacks the binary.
    fn new() -> Windows {
        let dir = WinDir::new();
        let out = dir.path().join("dist");
        let sh = test_support::shell();
        run_ok(cmd!(sh, "{XTASK} dist --target x86_64-pc-windows-gnu --version {VERSION} --out {out}"));
        let zip = out.join(format!("stigmer-v{VERSION}-windows-amd64.zip"));
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
        let mut entry = archive.by_name(&format!("stigmer-v{VERSION}-windows-amd64/stigmer.exe")).unwrap();
        let exe = dir.path().join("stigmer.exe");
        std::io::copy(&mut entry, &mut std::fs::File::create(&exe).unwrap()).unwrap();
        let home = dir.path().join("home");
        Windows { dir, zip, exe, home }
    }

    /// `stigmer.exe args...` under Wine, with this home and none of this machine's
    /// engine settings (Wine hands every variable on).
    fn stigmer<'a>(&self, sh: &'a Shell, args: &[&str]) -> Cmd<'a> {
        self.dir
            .run(sh, &self.exe, args)
            .env("STIGMER_HOME", self.home_path())
            .env("STIGMER_NO_UPDATE_CHECK", "1")
            .env_remove("DOCKER_HOST")
            .env_remove("CONTAINER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_CONFIG")
            .env_remove("STIGMER_AGENT_RUNNER_IMAGE")
    }

    /// The home as the Windows CLI names it (and labels its containers with).
    fn home_path(&self) -> String {
        self.dir.windows_path(&self.home)
    }
}

fn combined(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// What a user of the zip sees with `zipinfo`, sizes left out (they change with every
/// edit), and each entry's time, which must be the commit's in UTC.
fn listing(zip: &Path, commit_time: &str) -> String {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    (0..archive.len())
        .map(|index| {
            let entry = archive.by_index(index).unwrap();
            let time = entry.last_modified().unwrap_or_default();
            let time = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}",
                time.year(),
                time.month(),
                time.day(),
                time.hour(),
                time.minute()
            );
            let time = if time == commit_time { "[commit time]" } else { &time };
            format!(
                "{:o} {:?} extra={} time={time} {}",
                entry.unix_mode().unwrap_or(0),
                entry.compression(),
                entry.extra_data().map_or(0, |extra| extra.len()),
                entry.name().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The zip packs the same bytes twice (one build: a relink's sameness is the release
/// rehearsal's rerun, which found the linker's time in the PE header), and that time is
/// the commit's.
#[test]
fn the_windows_zip_is_reproducible_and_its_cli_runs_under_wine_naming_its_stamp() {
    let windows = Windows::new();
    // Another out directory, another path: the same bytes.
    let again = windows.dir.path().join("again");
    let sh = test_support::shell();
    run_ok(cmd!(sh, "{XTASK} dist --target x86_64-pc-windows-gnu --version {VERSION} --out {again}"));
    let name = windows.zip.file_name().unwrap();
    assert!(
        std::fs::read(&windows.zip).unwrap() == std::fs::read(again.join(name)).unwrap(),
        "two builds of one commit gave different zips"
    );
    let commit_time = cmd!(sh, "git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M")
        .env("TZ", "UTC")
        .read()
        .unwrap();
    insta::assert_snapshot!(listing(&windows.zip, &commit_time));
    let sums = std::fs::read_to_string(windows.zip.parent().unwrap().join("checksums.txt")).unwrap();
    assert!(sums.contains(&format!("  stigmer-v{VERSION}-windows-amd64.zip\n")), "{sums}");

    let exe = &windows.exe;
    let kind = run_ok(cmd!(sh, "file {exe}"));
    assert!(kind.contains("PE32+ executable (console) x86-64, for MS Windows"), "{kind}");
    // The COFF header's TimeDateStamp, where the DOS header's e_lfanew points, plus 8.
    let bytes = std::fs::read(exe).unwrap();
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let linked = le32(le32(0x3c) as usize + 8);
    let commit = cmd!(sh, "git log -1 --format=%ct").read().unwrap();
    assert_eq!(linked.to_string(), commit, "the PE header's time is not the commit's");
    let version = run_ok(windows.stigmer(&sh, &["--version"]));
    let revision = cmd!(sh, "git rev-parse HEAD").read().unwrap();
    assert!(version.contains(&format!("stigmer {VERSION}\nrevision:      {revision}\n")), "{version}");
}

#[test]
fn with_no_engine_the_windows_cli_names_the_pipes_it_tried_and_exits_3() {
    test_support::engine::require_engine();
    let windows = Windows::new();
    let sh = test_support::shell();
    let output = run(windows.stigmer(&sh, &["server", "status"]));
    let text = combined(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            "Tried, in this order:\n  - npipe:////./pipe/docker_engine (Docker Desktop): no such pipe\n  \
             - npipe:////./pipe/podman-machine-default (Podman machine podman-machine-default): no such pipe\n"
        ),
        "{text}"
    );
    // Nothing is written before an engine answers.
    assert!(!windows.home.exists(), "the home was made with no engine");

    // DOCKER_HOST is then the only address, tcp:// included.
    let host = format!("tcp://127.0.0.1:{}", free_port());
    let output = run(windows.stigmer(&sh, &["server", "status"]).env("DOCKER_HOST", &host));
    let text = combined(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(text.contains(&format!("Tried, in this order:\n  - {host} (DOCKER_HOST): ")), "{text}");
    assert!(!text.contains("npipe:"), "{text}");
}

/// A Windows installation with Docker Engine 20.10 on a loopback port, and an
/// agent-runner name and port of its own; its container is removed on drop.
struct OnEngine {
    windows: Windows,
    engine: TcpForward,
    image: String,
    name: String,
    port: String,
    _container: ContainerGuard,
}

impl OnEngine {
    fn new() -> OnEngine {
        test_support::engine::require_engine();
        let name = unique_name("stigmer-windows");
        OnEngine {
            windows: Windows::new(),
            engine: TcpForward::start(Path::new("/var/run/docker.sock")),
            image: test_support::base_image::agent_runner_image(VERSION),
            _container: ContainerGuard { name: name.clone() },
            name,
            port: free_port().to_string(),
        }
    }

    /// `stigmer.exe args...` reaching the engine through `DOCKER_HOST=tcp://127.0.0.1:PORT`.
    fn stigmer<'a>(&self, sh: &'a Shell, args: &[&str]) -> Cmd<'a> {
        self.windows
            .stigmer(sh, args)
            .env("DOCKER_HOST", self.engine.docker_host())
            .env("STIGMER_AGENT_RUNNER_NAME", &self.name)
    }
}

#[test]
fn the_windows_cli_runs_status_logs_and_stop_against_an_engine_over_tcp() {
    let on = OnEngine::new();
    let (windows, engine, image, name, port) = (&on.windows, &on.engine, &on.image, &on.name, &on.port);
    let sh = test_support::shell();
    let stigmer = |args: &[&str]| on.stigmer(&sh, args);

    let missing = run(stigmer(&["server", "status"]));
    assert_eq!(missing.status.code(), Some(4), "{}", combined(&missing));
    assert!(combined(&missing).contains("agent-runner: missing"), "{}", combined(&missing));

    // As `stigmer server start` on Docker Desktop makes it: our labels, this home.
    let (managed, home) = (
        "dev.stigmer.managed-by=stigmer-cli".to_owned(),
        format!("dev.stigmer.home={}", windows.home_path()),
    );
    let port_env = format!("STIGMER_AGENT_RUNNER_PORT={port}");
    run_ok(cmd!(
        sh,
        "docker run --detach --name {name} --label {managed} --label {home} --env {port_env} --health-interval 1s --network host {image}"
    ));
    test_support::engine::wait_healthy(name, std::time::Duration::from_secs(60)).unwrap();

    let status = run_ok(stigmer(&["server", "status"]));
    assert!(status.contains("agent-runner: running, healthy"), "{status}");
    assert!(status.contains(&format!("  endpoint   http://127.0.0.1:{port}")), "{status}");
    let json = run_ok(stigmer(&["server", "status", "--json"]));
    let json: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!((json["state"].as_str(), json["ready"].as_bool()), (Some("running"), Some(true)), "{json}");
    assert_eq!(json["engine"], engine.docker_host().as_str());

    // The agent-runner logs a line per health check: its whole log, read afterwards,
    // holds the three lines `logs --tail 3` printed.
    let logs = run_ok(stigmer(&["server", "logs", "--tail", "3"]));
    let lines: Vec<&str> = logs.lines().filter(|line| line.starts_with('{')).collect();
    assert_eq!(lines.len(), 3, "{logs}");
    let all = run_ok(cmd!(sh, "docker logs {name}"));
    for line in lines {
        assert!(
            all.contains(line),
            "`stigmer server logs` printed {line:?}, which is not in the log:\n{all}"
        );
    }

    let stopped = run_ok(stigmer(&["server", "stop"]));
    assert!(stopped.contains(&format!("stopped and removed {name}")), "{stopped}");
    let left = cmd!(sh, "docker ps --all --quiet --filter name=^{name}$").read().unwrap();
    assert!(left.is_empty(), "stop left the container");
    let again = run_ok(stigmer(&["server", "stop"]));
    assert!(again.contains("agent-runner is not running"), "{again}");
}

#[test]
fn the_windows_cli_starts_until_a_linux_engine_refuses_its_windows_bind_mount() {
    let on = OnEngine::new();
    let name = &on.name;
    let sh = test_support::shell();
    // With no STIGMER_HOME, the home is %USERPROFILE%\.stigmer (this test alone uses it).
    let home = test_support::wine::user_profile().join(".stigmer");
    let _ = std::fs::remove_dir_all(&home);
    let output = run(on
        .stigmer(&sh, &["server", "start", "--port", &on.port, "--timeout", "20"])
        .env_remove("STIGMER_HOME")
        .env("STIGMER_AGENT_RUNNER_IMAGE", &on.image)
        .env("OPENAI_API_KEY", "sk-test"));
    let text = combined(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    // dockerd 20.10 splits `Z:\...\workspace:/workspace` at its colons: volume `Z`,
    // path `\...\workspace`, mode `/workspace`.
    assert!(
        text.contains(
            "error: creating the agent-runner container: Docker responded with status code 500: \
             invalid mode: /workspace"
        ),
        "{text}"
    );
    // It got that far: the workspace is made, and the key file written for the container
    // is removed again, since no container mounts it.
    let (workspace, secrets) = (home.join("workspace").is_dir(), home.join("data/secrets").exists());
    let _ = std::fs::remove_dir_all(&home);
    assert!(workspace, "no workspace in {}: {text}", home.display());
    assert!(!secrets, "a key file outlived the failed start");
    let made = cmd!(sh, "docker ps --all --quiet --filter name=^{name}$").read().unwrap();
    assert!(made.is_empty(), "a container was made: {made}");
}
