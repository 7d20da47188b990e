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
        let _ =
            cmd!(sh, "docker image rm --force {references...}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

/// The architecture recorded in a local image's config (`amd64`, `arm64`).
pub fn image_architecture(reference: &str) -> anyhow::Result<String> {
    let sh = crate::shell();
    let format = "{{.Architecture}}";
    let arch = cmd!(sh, "docker image inspect --format {format} {reference}").quiet().read()?;
    Ok(arch.trim().to_owned())
}
