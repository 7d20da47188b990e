//! The Docker Engine as tests see it: a check that it answers, and a guard that
//! removes the images a test made; and the engines the CLI's lifecycle tests run on,
//! each through its own Docker API socket. Starting the engines is `ci/setup.sh`'s job.

use xshell::{cmd, Shell};

/// An engine the CLI's tests run against, through the Docker API as the CLI reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Docker Engine 20.10 (Debian 12's docker.io), the default socket: images the
    /// tests build are built here.
    Docker20,
    /// Docker Engine 26 with the containerd image store (Debian 13's docker.io, the
    /// buildx builder's engine): image ids are manifest digests there.
    Docker26,
    /// Podman 4.3's Docker-compatible service on its rootful socket.
    Podman,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Docker20, Engine::Docker26, Engine::Podman];

    /// The engine's `DOCKER_HOST`.
    pub fn host(self) -> String {
        match self {
            Engine::Docker20 => "unix:///var/run/docker.sock".to_owned(),
            Engine::Docker26 => crate::buildx::docker_host(),
            Engine::Podman => "unix:///run/podman/podman.sock".to_owned(),
        }
    }

    /// What it is, with the version it reports: "Podman 4.3.1".
    pub fn describe(self) -> String {
        let version = server_version(&self.unchecked_shell()).unwrap_or_else(|| "(not answering)".to_owned());
        let kind = match self {
            Engine::Docker20 => "Docker Engine",
            Engine::Docker26 => "Docker Engine (containerd store)",
            Engine::Podman => "Podman",
        };
        format!("{kind} {version}")
    }

    /// A shell whose `docker` commands (and the `stigmer` it runs) reach this engine.
    /// Panics with how to start it when it does not answer.
    pub fn shell(self) -> Shell {
        let sh = self.unchecked_shell();
        let host = self.host();
        assert!(
            self.answers(),
            "{self:?} does not answer `docker --host {host} info`: run `bash ci/setup.sh` \
             (it starts dockerd, dockerd 26 and `podman system service`; logs: /tmp/dockerd.log, \
             /tmp/dockerd26.log, /tmp/podman.log)"
        );
        sh
    }

    /// Whether it answers `docker info`: for a prerequisite check that lists what is
    /// missing rather than panicking.
    pub fn answers(self) -> bool {
        server_version(&self.unchecked_shell()).is_some()
    }

    fn unchecked_shell(self) -> Shell {
        let sh = crate::shell();
        sh.set_var("DOCKER_HOST", self.host());
        sh
    }

    /// Makes `reference`, an image of the default engine, present in this one under the
    /// same name (`docker save`, then `load`), unless it holds that image already. The
    /// config's creation time tells: ids differ across image stores (a manifest digest
    /// on the containerd store), the config does not.
    pub fn provide(self, reference: &str) {
        if self == Engine::Docker20 {
            return;
        }
        let (here, there) = (crate::shell(), self.shell());
        let format = "{{.Created}}";
        let created = |sh: &Shell| {
            cmd!(sh, "docker image inspect --format {format} {reference}").quiet().ignore_stderr().read().ok()
        };
        let wanted = created(&here).unwrap_or_else(|| panic!("{reference} is not in the default engine"));
        if created(&there).as_ref() == Some(&wanted) {
            return;
        }
        let archive = tempfile::NamedTempFile::new().expect("creating a temporary file");
        let path = archive.path();
        crate::run_captured(cmd!(here, "docker save --output {path} {reference}"), "docker save")
            .and_then(|_| crate::run_captured(cmd!(there, "docker load --input {path}"), "docker load"))
            .unwrap_or_else(|err| panic!("moving {reference} to {self:?}: {err:#}"));
    }
}

/// The version the engine `sh`'s `docker` reaches reports, when it answers `docker info`.
fn server_version(sh: &Shell) -> Option<String> {
    let format = "{{.ServerVersion}}";
    let version = cmd!(sh, "docker info --format {format}").quiet().ignore_stderr().read().ok()?;
    Some(version.trim().to_owned()).filter(|version| !version.is_empty())
}

/// Panics with how to start the engine when `docker info` does not answer.
pub fn require_engine() {
    assert!(
        server_version(&crate::shell()).is_some(),
        "the Docker Engine does not answer `docker info`: run `bash ci/setup.sh` \
         (installs docker.io and starts dockerd), or start dockerd yourself"
    );
}

/// Removes an image (every tag given) from the local engine, and from each engine it
/// was provided to, when dropped, so that parallel tests leave nothing behind.
pub struct ImageGuard {
    references: Vec<String>,
    engines: Vec<Engine>,
}

impl ImageGuard {
    pub fn new(references: impl IntoIterator<Item = impl Into<String>>) -> ImageGuard {
        ImageGuard::on(Engine::Docker20, references)
    }

    /// Removes the images from `engine` alone.
    pub fn on(engine: Engine, references: impl IntoIterator<Item = impl Into<String>>) -> ImageGuard {
        ImageGuard { references: references.into_iter().map(Into::into).collect(), engines: vec![engine] }
    }

    /// Removes the images from `engine` too.
    pub fn also_on(mut self, engine: Engine) -> ImageGuard {
        if !self.engines.contains(&engine) {
            self.engines.push(engine);
        }
        self
    }

    pub fn push(&mut self, reference: impl Into<String>) {
        self.references.push(reference.into());
    }
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let references = &self.references;
        for engine in &self.engines {
            let sh = engine.unchecked_shell();
            // Best effort: a tag the test never created is not worth a panic in drop.
            // --no-prune: tests run in parallel and the legacy builder's cache hands one
            // test's intermediate layers to another's build; pruning them mid-build fails
            // it with "unable to find image".
            let _ = cmd!(sh, "docker image rm --force --no-prune {references...}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
    }
}

/// The architecture recorded in a local image's config (`amd64`, `arm64`).
pub fn image_architecture(reference: &str) -> anyhow::Result<String> {
    let sh = crate::shell();
    let format = "{{.Architecture}}";
    let arch = cmd!(sh, "docker image inspect --format {format} {reference}").quiet().read()?;
    Ok(arch.trim().to_owned())
}

/// Removes a container (running or not) when dropped.
pub struct ContainerGuard {
    pub name: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let sh = crate::shell();
        let name = &self.name;
        let _ = cmd!(sh, "docker rm --force --volumes {name}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

/// Polls a container's health status until it is `healthy` (Ok) or `unhealthy`, the
/// container stops, or `timeout` passes (Err with the status and the last log lines).
pub fn wait_healthy(name: &str, timeout: std::time::Duration) -> Result<(), String> {
    let sh = crate::shell();
    let format = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}";
    let deadline = std::time::Instant::now() + timeout;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        last = cmd!(sh, "docker inspect --format {format} {name}").quiet().read().unwrap_or_default();
        match last.trim() {
            "running healthy" => return Ok(()),
            state if state.ends_with("unhealthy") || !state.starts_with("running") => break,
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    let logs = cmd!(sh, "docker logs --tail 30 {name}").quiet().ignore_status().output().unwrap();
    Err(format!(
        "container {name} is not healthy: {last}\n{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    ))
}
