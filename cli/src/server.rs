//! The agent-runner container's lifecycle: `start`, `stop`, `status`. The container is
//! found by name and by our labels; the id file in `data/` is only a cache of that.
//! Every container we make carries the home it belongs to, so `stop` removes its own
//! orphans and never another installation's (or another test's).
//!
//! Secrets never go into the container's environment, where `docker inspect` shows
//! them: each set API key is written to a file under `data/secrets/` (0600, in a 0700
//! directory) and mounted read-only, and the agent-runner reads `<NAME>_FILE`. The files
//! go when the containers of this home go (`stop`, and the cleanup before a start).

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bollard::{
    models::{
        ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, HealthConfig, HostConfig,
        HostConfigLogConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    },
    query_parameters::{
        CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
        RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
    },
};
use futures_util::StreamExt;
use serde_json::json;

use crate::{
    engine::{is_not_found, Engine},
    home::Home,
    image,
};

const LABEL_MANAGED_BY: &str = "dev.stigmer.managed-by";
const MANAGED_BY: &str = "stigmer-cli";
const LABEL_HOME: &str = "dev.stigmer.home";
const LABEL_CLI_VERSION: &str = "dev.stigmer.cli-version";
/// How often the engine runs the container's health check (the image's 30 s is too slow
/// for `status`), and the image's own timeout for one check (agent-runner/Dockerfile).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_NAME: &str = "stigmer-agent-runner";
/// The UID the image runs as (`USER 1000:1000` in agent-runner/Dockerfile).
#[cfg(target_os = "linux")]
const IMAGE_UID: u32 = 1000;

/// Variables passed into the container when they are set, and only then.
const PASSTHROUGH: [&str; 7] = [
    "STIGMER_LLM_PROVIDER",
    "STIGMER_LLM_MODEL",
    "STIGMER_SERVER_ADDR",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "STIGMER_LOG_LEVEL",
    "STIGMER_MAX_UPLOAD_BYTES",
];
/// Passed as read-only files, never as environment.
const SECRETS: [&str; 3] = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"];

/// The agent-runner did not become healthy; the message carries its last log lines.
#[derive(Debug)]
pub(crate) struct Unhealthy(pub(crate) String);

impl std::error::Error for Unhealthy {}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// When `container` runs another image than this stigmer would start (after an upgrade,
/// say): what it would start and how to switch.
fn other_image_note(container: &ContainerInspectResponse, would: &image::Choice) -> Option<String> {
    let running = container.config.as_ref().and_then(|c| c.image.as_deref()).map(image::familiar)?;
    let would = image::familiar(would.reference());
    (running != would).then(|| {
        format!(
            "this stigmer starts {would}, not {running}: switch with `stigmer server stop && stigmer server start`"
        )
    })
}

pub(crate) struct StartOptions {
    pub(crate) image: Option<String>,
    pub(crate) port: u16,
    pub(crate) timeout: Duration,
    pub(crate) pinned_digest: Option<&'static str>,
}

/// The container name: `STIGMER_AGENT_RUNNER_NAME`, for running a second agent-runner
/// beside the first (tests do); it also names the local image (`<name>:local`).
pub(crate) fn container_name() -> String {
    std::env::var("STIGMER_AGENT_RUNNER_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_NAME.to_owned())
}

pub(crate) async fn start(engine: &Engine, home: &Home, options: StartOptions) -> anyhow::Result<()> {
    let name = container_name();
    if let Some(existing) = find(engine, home, &name).await? {
        let id = existing.id.clone().unwrap_or_default();
        let running = existing.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if running {
            let port = container_port(&existing).unwrap_or(options.port);
            if probe(port) {
                write_id_file(home, &id)?;
                eprintln!("agent-runner is already running and healthy ({name}, http://127.0.0.1:{port})");
                let would = image::would_run(engine, &name, options.image, options.pinned_digest).await?;
                if let Some(note) = other_image_note(&existing, &would) {
                    eprintln!("note: {note}");
                }
                return Ok(());
            }
            eprintln!("agent-runner is running but not healthy yet; waiting");
            return wait_healthy(engine, &id, port, options.timeout).await;
        }
        remove(engine, &id).await?;
        eprintln!("removed a stopped {name} container left from an earlier run");
    }
    remove_orphans(engine, home, None, false).await?;
    // The keys of the containers just removed; the new container gets its own below, and
    // a start that fails before that (a failed pull) leaves none behind.
    remove_secrets(home)?;

    let image = image::ensure(engine, &name, options.image, options.pinned_digest).await?;
    let body = container_body(home, &image, options.port)?;
    let create = CreateContainerOptionsBuilder::new().name(&name).build();
    let created = match engine.docker.create_container(Some(create), body).await {
        Ok(created) => created,
        Err(err) => {
            // No container mounts the keys just written.
            remove_secrets(home)?;
            return Err(match err {
                bollard::errors::Error::DockerResponseServerError { status_code: 409, .. } => {
                    anyhow::anyhow!(
                        "a container named {name} exists that this stigmer did not create: remove it \
                         (`docker rm -f {name}`), or set STIGMER_AGENT_RUNNER_NAME to run beside it"
                    )
                }
                other => anyhow::Error::new(other).context("creating the agent-runner container"),
            });
        }
    };
    write_id_file(home, &created.id)?;
    engine.docker.start_container(&created.id, None).await.map_err(|err| {
        let message = crate::engine::root_cause(&err);
        let hint =
            if message.contains("port is already allocated") || message.contains("address already in use") {
                format!(": port {} is taken; stop what uses it or pass --port", options.port)
            } else {
                String::new()
            };
        anyhow::anyhow!("starting the agent-runner container: {message}{hint}")
    })?;
    wait_healthy(engine, &created.id, options.port, options.timeout).await
}

fn container_body(home: &Home, image: &str, port: u16) -> anyhow::Result<ContainerCreateBody> {
    let workspace = home.workspace();
    std::fs::create_dir_all(&workspace).with_context(|| format!("creating {}", workspace.display()))?;
    let secrets = home.secrets_dir();
    let mut env = vec![format!("STIGMER_AGENT_RUNNER_PORT={port}")];
    for name in PASSTHROUGH {
        if let Ok(value) = std::env::var(name) {
            env.push(format!("{name}={value}"));
        }
    }
    let secret_names = write_secrets(home)?;
    for name in &secret_names {
        env.push(format!("{name}_FILE=/run/secrets/stigmer/{name}"));
    }
    let user = container_user(&[&workspace, &secrets])?;

    let mut binds = vec![format!("{}:/workspace", host_path(&workspace)?)];
    if !secret_names.is_empty() {
        binds.push(format!("{}:/run/secrets/stigmer:ro", host_path(&secrets)?));
    }
    let labels = HashMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_HOME.to_owned(), home.root().display().to_string()),
        (LABEL_CLI_VERSION.to_owned(), crate::build_info::version().to_owned()),
    ]);
    // Host networking reaches services on the host's localhost (Temporal, the Stigmer
    // server) on Linux; Docker Desktop does not support it dependably, so elsewhere the
    // port is published on 127.0.0.1 only.
    let (network_mode, exposed_ports, port_bindings) = if cfg!(target_os = "linux") {
        (Some("host".to_owned()), None, None)
    } else {
        let binding =
            PortBinding { host_ip: Some("127.0.0.1".to_owned()), host_port: Some(port.to_string()) };
        (
            None,
            Some(vec![format!("{port}/tcp")]),
            Some(HashMap::from([(format!("{port}/tcp"), Some(vec![binding]))])),
        )
    };
    Ok(ContainerCreateBody {
        image: Some(image.to_owned()),
        env: Some(env),
        labels: Some(labels),
        user,
        exposed_ports,
        // The image checks every 30 s; `start` probes /healthz itself, and `status`
        // should not say "starting" for long, so check more often.
        healthcheck: Some(HealthConfig {
            interval: Some(HEALTH_INTERVAL.as_nanos() as i64),
            start_period: Some(30_000_000_000),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode,
            port_bindings,
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "3".to_owned()),
                ])),
            }),
            // No restarts until it has been healthy once (see `wait_healthy`): a crash
            // at startup then shows as exactly that, with its exit code.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A directory as the engine's bind mount names it. Unix: the path as it is. Windows:
/// absolute, with its drive (`C:\Users\me\.stigmer\workspace`), the form Docker
/// Desktop translates into its VM; never `canonicalize`'s `\\?\C:\...`, which it cannot.
#[cfg(unix)]
fn host_path(dir: &std::path::Path) -> anyhow::Result<String> {
    Ok(dir.display().to_string())
}

#[cfg(windows)]
fn host_path(dir: &std::path::Path) -> anyhow::Result<String> {
    let absolute = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    Ok(absolute.display().to_string())
}

/// Writes each set API key to its own file (0600, in a 0700 directory) and returns
/// the names written. Old files go first, so an unset key is not passed on.
fn write_secrets(home: &Home) -> anyhow::Result<Vec<&'static str>> {
    remove_secrets(home)?;
    let dir = home.secrets_dir();
    let mut written = Vec::new();
    for name in SECRETS {
        let Ok(value) = std::env::var(name) else { continue };
        if written.is_empty() {
            create_private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let path = dir.join(name);
        let mut file = create_private_file(&path).with_context(|| format!("writing {}", path.display()))?;
        file.write_all(value.as_bytes())?;
        written.push(name);
    }
    Ok(written)
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // The umask can only take bits away, but say exactly what we mean.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(unix)]
fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Windows: no modes. The files inherit the ACL of the home's directory, which under
/// `%USERPROFILE%` only the user (and administrators) may read.
#[cfg(windows)]
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(windows)]
fn create_private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

/// The API-key files live only as long as a container that mounts them: a key left on
/// disk after `stop` is a key nobody meant to keep.
fn remove_secrets(home: &Home) -> anyhow::Result<()> {
    let dir = home.secrets_dir();
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Who the container runs as, and making its directories writable for that user. On
/// Linux a non-root user runs it as themselves, so the workspace stays theirs; root
/// hands the directories to the image's UID 1000. Elsewhere Docker Desktop maps
/// ownership across its file sharing.
#[cfg(not(target_os = "linux"))]
fn container_user(_dirs: &[&std::path::Path]) -> anyhow::Result<Option<String>> {
    Ok(None)
}

#[cfg(target_os = "linux")]
fn container_user(dirs: &[&std::path::Path]) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to this process's effective user and group.
    let me = std::fs::metadata("/proc/self")?;
    let (uid, gid) = (me.uid(), me.gid());
    if uid == 0 {
        for dir in dirs.iter().filter(|d| d.exists()) {
            chown_tree(dir, IMAGE_UID)?;
        }
        return Ok(None);
    }
    Ok((uid != IMAGE_UID).then(|| format!("{uid}:{gid}")))
}

/// Hands `root` and everything below it to `uid`, at any depth: a workspace from an
/// older run (or an older stigmer, which went one level deep) can hold root-owned
/// directories the container could not write in. `root` itself is followed, as the bind
/// mount follows it; links below it are re-owned themselves and never followed, since
/// one in the workspace may point anywhere on the host.
#[cfg(target_os = "linux")]
fn chown_tree(root: &std::path::Path, uid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::chown(root, Some(uid), Some(uid))
        .with_context(|| format!("chown {}", root.display()))?;
    let mut dirs = vec![root.to_path_buf()];
    // A stack, not recursion: the depth of a user's tree is not ours to bound.
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            std::os::unix::fs::lchown(&path, Some(uid), Some(uid))
                .with_context(|| format!("chown {}", path.display()))?;
            if std::fs::symlink_metadata(&path)?.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(())
}

fn write_id_file(home: &Home, id: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(home.data_dir())?;
    let path = home.id_file();
    let partial = path.with_extension("id.partial");
    std::fs::write(&partial, format!("{id}\n"))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))
}

/// Our container: the one the id file names if it still exists and is ours, else the
/// one with our name and labels. A container of that name without our labels is an
/// error, not ours to touch.
pub(crate) async fn find(
    engine: &Engine,
    home: &Home,
    name: &str,
) -> anyhow::Result<Option<ContainerInspectResponse>> {
    let cached = std::fs::read_to_string(home.id_file()).ok().map(|id| id.trim().to_owned());
    for key in cached.iter().map(String::as_str).chain([name]) {
        match engine.docker.inspect_container(key, None).await {
            Ok(container) if is_ours(&container, home) => return Ok(Some(container)),
            Ok(_) if key == name => bail!(
                "a container named {name} exists that this stigmer did not create: remove it \
                 (`docker rm -f {name}`), or set STIGMER_AGENT_RUNNER_NAME to run beside it"
            ),
            Ok(_) => {}
            Err(err) if is_not_found(&err) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(None)
}

fn is_ours(container: &ContainerInspectResponse, home: &Home) -> bool {
    let labels = container.config.as_ref().and_then(|c| c.labels.as_ref());
    labels.is_some_and(|labels| {
        labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
            && labels.get(LABEL_HOME).map(String::as_str) == Some(&home.root().display().to_string())
    })
}

fn container_port(container: &ContainerInspectResponse) -> Option<u16> {
    let env = container.config.as_ref()?.env.as_ref()?;
    env.iter().find_map(|var| var.strip_prefix("STIGMER_AGENT_RUNNER_PORT=")?.parse().ok())
}

async fn remove(engine: &Engine, id: &str) -> anyhow::Result<()> {
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    match engine.docker.remove_container(id, Some(options)).await {
        Ok(()) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(anyhow::Error::new(err).context(format!("removing container {id}"))),
    }
}

/// Removes containers of this home other than `keep`: all of them, or only stopped
/// ones (at start, a running one might be a start still in progress elsewhere).
async fn remove_orphans(
    engine: &Engine,
    home: &Home,
    keep: Option<&str>,
    running_too: bool,
) -> anyhow::Result<usize> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{LABEL_MANAGED_BY}={MANAGED_BY}"), format!("{LABEL_HOME}={}", home.root().display())],
    )]);
    let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    let mut removed = 0;
    for container in engine.docker.list_containers(Some(options)).await? {
        let id = container.id.unwrap_or_default();
        let running = container.state.map(|s| s.to_string()) == Some("running".to_owned());
        if Some(id.as_str()) == keep || (running && !running_too) {
            continue;
        }
        remove(engine, &id).await?;
        let names = container.names.unwrap_or_default().join(",");
        eprintln!(
            "removed orphaned agent-runner container {} ({})",
            names.trim_start_matches('/'),
            &id[..12.min(id.len())]
        );
        removed += 1;
    }
    Ok(removed)
}

async fn wait_healthy(engine: &Engine, id: &str, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(100));
    let mut next_state_check = Instant::now();
    loop {
        spinner.set_message(format!(
            "waiting for the agent-runner to become healthy ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        if probe(port) {
            spinner.finish_and_clear();
            // Healthy once: from now on the engine brings it back after a crash or reboot.
            let policy = RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            };
            let update = ContainerUpdateBody { restart_policy: Some(policy), ..Default::default() };
            match engine.docker.update_container(id, update).await {
                Ok(_) => {}
                // Podman before 5 has no update endpoint (404 for a container that is
                // there): the container keeps the policy it was created with, "no".
                Err(err) if is_not_found(&err) && engine.docker.inspect_container(id, None).await.is_ok() => {
                    eprintln!(
                        "note: the engine at {} cannot change a container's restart policy (Podman before 5 \
                         cannot), so the agent-runner will not come back by itself after a crash or a \
                         reboot: run `stigmer server start` again then",
                        engine.endpoint
                    )
                }
                Err(err) => return Err(anyhow::Error::new(err).context("setting the restart policy")),
            }
            eprintln!(
                "agent-runner is healthy after {:.1} s: http://127.0.0.1:{port} ({})",
                started.elapsed().as_secs_f64(),
                &id[..12.min(id.len())]
            );
            return Ok(());
        }
        let reason = if started.elapsed() > timeout {
            Some(format!("it did not become healthy within {} s", timeout.as_secs()))
        } else if Instant::now() >= next_state_check {
            next_state_check = Instant::now() + Duration::from_millis(500);
            match engine.docker.inspect_container(id, None).await {
                Ok(container) => {
                    let state = container.state.unwrap_or_default();
                    (!state.running.unwrap_or(false))
                        .then(|| format!("the container exited (code {})", state.exit_code.unwrap_or(-1)))
                }
                // Podman passes through states Docker has no name for (`stopped`, on the
                // way to `exited`), which bollard cannot read: ask again next time.
                Err(bollard::errors::Error::JsonDataError { .. }) => None,
                Err(err) => return Err(err.into()),
            }
        } else {
            None
        };
        if let Some(reason) = reason {
            spinner.finish_and_clear();
            // Keep the failed container from restarting in a loop, but leave it for
            // `stigmer server logs`; the next start removes it.
            let stop = StopContainerOptionsBuilder::new().t(2).build();
            let _ = engine.docker.stop_container(id, Some(stop)).await;
            let logs = last_log_lines(engine, id, 30).await;
            return Err(Unhealthy(format!(
                "the agent-runner failed to start: {reason}. Its last log lines:\n{logs}\n\
                 See all of them with `stigmer server logs`; fix the cause and run `stigmer server start` again"
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn last_log_lines(engine: &Engine, id: &str, lines: usize) -> String {
    let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&lines.to_string()).build();
    let mut stream = engine.docker.logs(id, Some(options));
    let mut text = String::new();
    while let Some(Ok(frame)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&frame.into_bytes()));
    }
    text.lines().map(|line| format!("  | {line}\n")).collect()
}

/// `GET /healthz` on loopback answers 200: the agent-runner's own word on readiness.
pub(crate) fn probe(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_millis(300))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(stream, "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

pub(crate) async fn stop(engine: &Engine, home: &Home, timeout: Duration) -> anyhow::Result<()> {
    let name = container_name();
    let current = find(engine, home, &name).await?;
    let mut did_something = false;
    if let Some(container) = &current {
        let id = container.id.clone().unwrap_or_default();
        // bollard takes i32 seconds; `as i32` would turn a huge --timeout into -1, which
        // the engine reads as "no timeout". 68 years is as good as forever.
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let stop = StopContainerOptionsBuilder::new().t(seconds).build();
        match engine.docker.stop_container(&id, Some(stop)).await {
            Ok(()) => {}
            Err(err) if is_not_found(&err) => {}
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(err) => return Err(anyhow::Error::new(err).context("stopping the agent-runner")),
        }
        remove(engine, &id).await?;
        eprintln!("stopped and removed {name} ({})", &id[..12.min(id.len())]);
        did_something = true;
    }
    let keep = current.as_ref().and_then(|c| c.id.as_deref());
    did_something |= remove_orphans(engine, home, keep, true).await? > 0;
    match std::fs::remove_file(home.id_file()) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).context("removing the container id file"),
    }
    // Every container of this home is gone, so are the keys they mounted (also those an
    // older stigmer, which kept them, left behind).
    remove_secrets(home)?;
    if !did_something {
        eprintln!("agent-runner is not running");
    }
    Ok(())
}

/// Prints the status; returns whether the agent-runner is running and healthy.
pub(crate) async fn status(engine: &Engine, home: &Home, as_json: bool) -> anyhow::Result<bool> {
    let name = container_name();
    let Some(container) = find(engine, home, &name).await? else {
        if as_json {
            println!("{}", json!({ "state": "missing", "name": name, "engine": engine.endpoint }));
        } else {
            println!("agent-runner: missing (start it with `stigmer server start`)");
        }
        return Ok(false);
    };
    let state = container.state.clone().unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let port = container_port(&container);
    let ready = running && port.is_some_and(probe);
    let checks_run = state.health.as_ref().and_then(|h| h.log.as_ref()).is_some_and(|log| !log.is_empty());
    let health =
        state.health.and_then(|h| h.status).map(|s| s.to_string()).unwrap_or_else(|| "none".to_owned());
    let image =
        container.config.as_ref().and_then(|c| c.image.as_deref()).map(image::familiar).unwrap_or_default();
    let image_id = container.image.clone().unwrap_or_default();
    let image_labels = image::labels(engine, &image_id).await?.unwrap_or_default();
    let version = image_labels.get(image::VERSION_LABEL).cloned().unwrap_or_else(|| "unknown".to_owned());
    let started_at = state.started_at.unwrap_or_default();
    let uptime = chrono::DateTime::parse_from_rfc3339(&started_at)
        .ok()
        .filter(|_| running)
        .map(|started| (chrono::Utc::now() - started.with_timezone(&chrono::Utc)).num_seconds().max(0));
    let explicit = std::env::var("STIGMER_AGENT_RUNNER_IMAGE").ok().filter(|image| !image.is_empty());
    let would = image::would_run(engine, &name, explicit, crate::build_info::image_digest()).await?;
    let other_image = other_image_note(&container, &would);
    let id = container.id.unwrap_or_default();
    let state_name = if running { "running" } else { "stopped" };
    if as_json {
        println!(
            "{}",
            json!({
                "state": state_name, "name": name, "id": id, "image": image, "image_id": image_id,
                "version": version, "uptime_seconds": uptime, "health": health, "ready": ready,
                "endpoint": port.map(|p| format!("http://127.0.0.1:{p}")), "engine": engine.endpoint,
                "would_start": image::familiar(would.reference()), "image_current": other_image.is_none(),
            })
        );
    } else {
        println!("agent-runner: {state_name}{}", if ready { ", healthy" } else { "" });
        println!("  container  {name} ({})", &id[..12.min(id.len())]);
        println!("  image      {image} ({})", &image_id[..19.min(image_id.len())]);
        println!("  version    {version}");
        if let Some(note) = &other_image {
            println!("  note       {note}");
        }
        if let Some(uptime) = uptime {
            println!("  uptime     {}", human_duration(uptime));
        }
        // Docker logs the first check one interval after start, once it ends (within
        // the image's 10 s timeout). Podman runs checks from systemd timers: without
        // systemd it never does, and says "starting".
        let unchecked_for = (HEALTH_INTERVAL + HEALTH_TIMEOUT).as_secs() as i64 + 5;
        let engine_health =
            if health == "starting" && !checks_run && uptime.is_some_and(|up| up > unchecked_for) {
                "never checked by the engine (Podman runs health checks from systemd timers)".to_owned()
            } else {
                format!("{health} (engine)")
            };
        println!(
            "  health     {engine_health}, {} (GET /healthz)",
            if ready { "ready" } else { "not answering" }
        );
        if let Some(port) = port {
            println!("  endpoint   http://127.0.0.1:{port}");
        }
    }
    Ok(ready)
}

fn human_duration(seconds: i64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{}s", seconds / 60, seconds % 60),
        _ => format!("{}h{}m", seconds / 3600, seconds % 3600 / 60),
    }
}
