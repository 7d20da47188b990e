//! The container engine as xtask drives it: the `docker` CLI (or `podman`, whose CLI
//! is the same for what we use) through xshell. The CLI, not bollard, because it picks
//! the builder (legacy or BuildKit), honours contexts and `DOCKER_HOST`, reads
//! `.dockerignore`, and streams the build progress users already know.

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::build::prepare::{self, BuildRequest, DependencyPath};

pub(crate) struct Engine {
    /// `docker` or `podman`.
    program: &'static str,
}

/// Why `docker info` gave no server version.
enum InfoFailure {
    /// The CLI could not be started.
    NotRun(String),
    /// The CLI ran and said why (its last line of stderr), three times.
    Answered(String),
}

impl std::fmt::Display for InfoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InfoFailure::NotRun(spawn) => write!(f, "could not be run: {spawn}"),
            InfoFailure::Answered(stderr) => f.write_str(stderr),
        }
    }
}

/// Whether `program` is an executable file in a `PATH` directory (what the shell would run).
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The parts of `docker image inspect` that xtask reports on.
pub(crate) struct ImageFacts {
    pub(crate) id: String,
    pub(crate) size: u64,
    pub(crate) architecture: String,
    pub(crate) layers: Vec<String>,
    /// When the image was made (its config's `created`), if the engine says.
    pub(crate) created: Option<chrono::DateTime<chrono::Utc>>,
}

impl Engine {
    /// The first engine CLI whose daemon answers; otherwise an error that says what each
    /// CLI reported and how to start or install an engine.
    pub(crate) fn connect(sh: &Shell) -> anyhow::Result<Engine> {
        let mut failures = Vec::new();
        for program in ["docker", "podman"] {
            if !on_path(program) {
                continue;
            }
            let engine = Engine { program };
            match engine.info(sh) {
                Ok(()) => return Ok(engine),
                Err(failure) => failures.push((program, failure)),
            }
        }
        let reported: Vec<String> =
            failures.iter().map(|(program, failure)| format!("`{program} info`: {failure}")).collect();
        let reported = reported.join("\n");
        if !failures.is_empty()
            && failures.iter().all(|(_, failure)| matches!(failure, InfoFailure::NotRun(_)))
        {
            bail!(
                "❌ The container engine's CLI could not be run, so whether an engine answers is \
                 unknown.\n{reported}\n\nFix that, then run this command again."
            );
        }
        let (headline, found) = if failures.is_empty() {
            (
                "❌ No container engine is installed. Building the agent-runner image needs one.",
                "Neither `docker` nor `podman` is installed.".to_owned(),
            )
        } else {
            ("❌ Docker is not running. Building the agent-runner image needs a container engine.", reported)
        };
        bail!(
            "{headline}\n\
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

    /// `docker info`, asked up to three times over about two seconds: an engine that is
    /// starting or busy answers late, and one slow answer must not read as "not running".
    /// A CLI that cannot be started at all (seen: a working directory that no longer
    /// exists) is reported as that, at once.
    fn info(&self, sh: &Shell) -> Result<(), InfoFailure> {
        let program = self.program;
        let format = "{{.ServerVersion}}";
        let mut last = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_millis(800));
            }
            let output = cmd!(sh, "{program} info --format {format}")
                .quiet()
                .ignore_status()
                .output()
                .map_err(|spawn| InfoFailure::NotRun(format!("{spawn:#}")))?;
            if output.status.success() {
                return Ok(());
            }
            last = last_line(&output.stderr).unwrap_or_else(|| format!("exited with {}", output.status));
        }
        // Docker 20.10's CLI (Debian 12's) answers an unreachable daemon with only the
        // template's failure ("template: ... nil pointer ..."); `version` still says why.
        if last.starts_with("template:") {
            let format = "{{.Server.Version}}";
            let version = cmd!(sh, "{program} version --format {format}").quiet().ignore_status().output();
            if let Some(why) = version.ok().and_then(|output| last_line(&output.stderr)) {
                last = why;
            }
        }
        Err(InfoFailure::Answered(last))
    }

    pub(crate) fn program(&self) -> &'static str {
        self.program
    }

    /// Builds through the engine, its output streaming to the terminal; returns the
    /// image id. A Dockerfile with a `prepared` stage gets its platform's files
    /// prepared on this machine (`prepare.rs`) by `DependencyPath::BuildPlatform`, so no
    /// step runs target-platform code; `Emulated` is `--allow-emulation`.
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
        let context = prepared.as_ref().map_or(context, prepare::PreparedContext::context);
        let iid_dir = tempfile::tempdir()?;
        let iidfile = iid_dir.path().join("iid");
        let tags = request.tags.iter().flat_map(|tag| ["--tag", tag.as_str()]);
        let labels = request.labels.iter().flat_map(|label| ["--label", label.as_str()]);
        let build_args = build_args.iter().flat_map(|arg| ["--build-arg", arg.as_str()]);
        let pull = request.pull.then_some("--pull");
        let no_cache = request.no_cache.then_some("--no-cache");
        let build = cmd!(
            sh,
            "{program} build {pull...} {no_cache...} --platform {platform} --file {file} --iidfile {iidfile} {tags...} {labels...} {build_args...} {context}"
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
            created: image["Created"]
                .as_str()
                .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
                .map(|created| created.to_utc()),
        }))
    }
}

/// The last line of a command's stderr that says something, trimmed.
fn last_line(stderr: &[u8]) -> Option<String> {
    let stderr = String::from_utf8_lossy(stderr);
    stderr.lines().rev().map(str::trim).find(|line| !line.is_empty()).map(str::to_owned)
}
