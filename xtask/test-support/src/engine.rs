//! The Docker Engine as tests see it: a check that it answers, and a guard that
//! removes the images a test made. Starting the engine is `ci/setup.sh`'s job.

use xshell::cmd;

/// Panics with how to start the engine when `docker info` does not answer.
pub fn require_engine() {
    let sh = crate::shell();
    let format = "{{.ServerVersion}}";
    let answers = cmd!(sh, "docker info --format {format}")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|version| !version.trim().is_empty());
    assert!(
        answers,
        "the Docker Engine does not answer `docker info`: run `bash ci/setup.sh` \
         (installs docker.io and starts dockerd), or start dockerd yourself"
    );
}

/// Removes an image (every tag given) from the local engine when dropped, so that
/// parallel tests leave nothing behind.
pub struct ImageGuard {
    references: Vec<String>,
}

impl ImageGuard {
    pub fn new(references: impl IntoIterator<Item = impl Into<String>>) -> ImageGuard {
        ImageGuard { references: references.into_iter().map(Into::into).collect() }
    }

    pub fn push(&mut self, reference: impl Into<String>) {
        self.references.push(reference.into());
    }
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let sh = crate::shell();
        let references = &self.references;
        // Best effort: a tag the test never created is not worth a panic in drop.
        // --no-prune: tests run in parallel and the legacy builder's cache hands one
        // test's intermediate layers to another's build; pruning them mid-build fails it
        // with "unable to find image".
        let _ = cmd!(sh, "docker image rm --force --no-prune {references...}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run();
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
