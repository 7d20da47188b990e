//! The container engine as xtask drives it: the `docker` CLI (or `podman`, whose CLI
//! is the same for what we use) through xshell. The CLI, not bollard, because it picks
//! the builder (legacy or BuildKit), honours contexts and `DOCKER_HOST`, reads
//! `.dockerignore`, and streams the build progress users already know.

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::prepare::{self, BuildRequest, DependencyPath};

pub(crate) struct Engine {
    /// `docker` or `podman`.
    program: &'static str,
}

/// The parts of `docker image inspect` that xtask reports on.
pub(crate) struct ImageFacts {
    pub(crate) id: String,
    pub(crate) size: u64,
    pub(crate) architecture: String,
    pub(crate) layers: Vec<String>,
}

impl Engine {
    /// The first engine CLI whose daemon answers; otherwise an error that says how to
    /// start or install one.
    pub(crate) fn connect(sh: &Shell) -> anyhow::Result<Engine> {
        let mut present = Vec::new();
        for program in ["docker", "podman"] {
            if !test_support::on_path(program) {
                continue;
            }
            present.push(program);
            let engine = Engine { program };
            if engine.answers(sh) {
                return Ok(engine);
            }
        }
        let found = match present.as_slice() {
            [] => "Neither `docker` nor `podman` is installed.".to_owned(),
            programs => format!("`{}` is installed, but no engine answers.", programs.join("`, `")),
        };
        bail!(
            "❌ Docker is not running. Building the agent-runner image needs a container engine.\n\
             {found}\n\n\
             Please start Docker Desktop or install Docker:\n  \
             - macOS:   brew install --cask docker, then open Docker Desktop\n  \
             - Linux:   sudo apt-get install docker.io && sudo systemctl start docker\n             \
                        (no systemd: sudo dockerd >/tmp/dockerd.log 2>&1 &)\n  \
             - Windows: install Docker Desktop from https://www.docker.com/products/docker-desktop\n\
             Podman works too: `podman system service --time=0 &`.\n\n\
             Check with `docker info`, then run this command again."
        )
    }

    fn answers(&self, sh: &Shell) -> bool {
        let program = self.program;
        cmd!(sh, "{program} info").quiet().ignore_stdout().ignore_stderr().run().is_ok()
    }

    pub(crate) fn program(&self) -> &'static str {
        self.program
    }

    /// Builds through the engine, its output streaming to the terminal; returns the
    /// image id. A Dockerfile with a `prepared` stage gets its platform's files
    /// prepared on this machine (`prepare.rs`), so no step runs target-platform code.
    pub(crate) fn build(&self, sh: &Shell, request: &BuildRequest<'_>) -> anyhow::Result<String> {
        self.build_with(sh, request, DependencyPath::BuildPlatform)
    }

    /// `build`, choosing where the Dockerfile's `prepare` stage runs.
    pub(crate) fn build_with(
        &self,
        sh: &Shell,
        request: &BuildRequest<'_>,
        path: DependencyPath,
    ) -> anyhow::Result<String> {
        let program = self.program;
        let context = request.context;
        let dockerfile = context.join("Dockerfile");
        if !dockerfile.is_file() {
            bail!("{} is missing: the agent-runner image is built from it", dockerfile.display());
        }
        let text = std::fs::read_to_string(&dockerfile)
            .with_context(|| format!("reading {}", dockerfile.display()))?;
        let platform = request.platform.to_string();
        let mut build_args: Vec<String> =
            request.build_args.iter().map(|(name, value)| format!("{name}={value}")).collect();
        // Kept until the build ends: the prepared files are in the context.
        let mut prepared = None;
        if prepare::has_prepared_stage(&text) {
            match path {
                DependencyPath::BuildPlatform => {
                    prepared = Some(prepare::on_host(sh, program, request, &text)?);
                }
                DependencyPath::Emulated => {
                    eprintln!("==> {platform}: installing the dependencies inside the {platform} base image (--allow-emulation)");
                    // The legacy builder sets no platform arguments; BuildKit's would agree.
                    build_args.extend([
                        format!("PREPARE_PLATFORM={platform}"),
                        format!("TARGETARCH={}", request.platform.arch()),
                        "EMULATED=1".to_owned(),
                    ]);
                }
            }
        }
        let file = prepared.as_ref().map_or(dockerfile.clone(), prepare::PreparedContext::dockerfile);
        let iid_dir = tempfile::tempdir()?;
        let iidfile = iid_dir.path().join("iid");
        let tags = request.tags.iter().flat_map(|tag| ["--tag", tag.as_str()]);
        let build_args = build_args.iter().flat_map(|arg| ["--build-arg", arg.as_str()]);
        let pull = request.pull.then_some("--pull");
        let no_cache = request.no_cache.then_some("--no-cache");
        let build = cmd!(
            sh,
            "{program} build {pull...} {no_cache...} --platform {platform} --file {file} --iidfile {iidfile} {tags...} {build_args...} {context}"
        );
        eprintln!("$ {build}");
        // Progress goes to stderr: stdout is for results (`image --by-digest` prints
        // its digest there for scripts).
        let status = std::process::Command::from(build)
            .stdout(std::io::stderr())
            .status()
            .with_context(|| format!("running `{program} build`"))?;
        if !status.success() {
            bail!("building {} for {platform} failed ({status}; its output is above)", dockerfile.display());
        }
        drop(prepared);
        let id = std::fs::read_to_string(&iidfile).context("reading the built image's id")?;
        Ok(id.trim().to_owned())
    }

    /// `None` when the engine has no such image.
    pub(crate) fn inspect(&self, sh: &Shell, reference: &str) -> anyhow::Result<Option<ImageFacts>> {
        let program = self.program;
        let output = cmd!(sh, "{program} image inspect {reference}").quiet().ignore_status().output()?;
        if !output.status.success() {
            return Ok(None);
        }
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("parsing `docker image inspect` output")?;
        let image = &json[0];
        Ok(Some(ImageFacts {
            id: image["Id"].as_str().unwrap_or_default().to_owned(),
            size: image["Size"].as_u64().unwrap_or_default(),
            architecture: image["Architecture"].as_str().unwrap_or_default().to_owned(),
            layers: image["RootFS"]["Layers"]
                .as_array()
                .map(|layers| layers.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        }))
    }
}
