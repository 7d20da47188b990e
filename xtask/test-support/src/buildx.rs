//! The engine the buildx builder runs on, and the SBOM scanner it uses.
//!
//! On our machines that is a second Docker Engine (26, containerd image store) beside
//! the 20.10 one, on its own socket, with the buildx plugin in a private Docker config:
//! `ci/setup.sh` installs and starts both. A test gets a `BuildxEnv` of its own: a
//! temporary `DOCKER_CONFIG` holding only its registry's credentials and a link to the
//! plugin directory, so credentials never leak from one test to another, and the
//! default engine and config never see buildx (a tool asking `docker buildx version`
//! there would pick buildx and fail). Elsewhere `STIGMER_BUILDX_DOCKER_HOST` and
//! `STIGMER_BUILDX_PLUGINS` name the engine and the plugin directory.
//!
//! It must not start or stop the engine, and never skips: a missing part panics with
//! `bash ci/setup.sh`.

use std::path::{Path, PathBuf};

use xshell::{cmd, Cmd};

use crate::registry::TestRegistry;

const DEFAULT_HOST: &str = "unix:///run/stigmer-docker26/docker.sock";
const DEFAULT_PLUGINS: &str = "/opt/stigmer-docker26/docker-config/cli-plugins";

/// The BuildKit image of buildx's docker-container driver, which `ci/setup.sh` builds
/// into the engine (`ci/buildkit-image.sh`): moby/buildkit cannot be pulled here. The
/// default is setup.sh's `buildkit_image` tag: change the two together.
pub fn buildkit_image() -> String {
    std::env::var("STIGMER_BUILDKIT_IMAGE").unwrap_or_else(|_| "stigmer-buildkit:docker.io-26.1.5".to_owned())
}

/// The engine's `DOCKER_HOST`.
pub fn docker_host() -> String {
    std::env::var("STIGMER_BUILDX_DOCKER_HOST").unwrap_or_else(|_| DEFAULT_HOST.to_owned())
}

/// The directory holding `docker-buildx`, linked into each test's Docker config.
pub fn plugins() -> PathBuf {
    std::env::var_os("STIGMER_BUILDX_PLUGINS").map_or_else(|| PathBuf::from(DEFAULT_PLUGINS), PathBuf::from)
}

/// What is missing for the buildx builder, each with its fix; empty when all is there.
/// `cargo xtask test` reports these with its other prerequisites; `BuildxEnv::new`
/// panics with them.
pub fn missing() -> Vec<String> {
    let setup = "run `bash ci/setup.sh`";
    let (host, plugins) = (docker_host(), plugins());
    let plugin = plugins.join("docker-buildx");
    let mut missing = Vec::new();
    let sh = crate::shell();
    let format = "{{.ServerVersion}} {{json .DriverStatus}}";
    let info = cmd!(sh, "docker --host {host} info --format {format}").quiet().ignore_stderr().read();
    match info {
        Err(_) => missing.push(format!(
            "the buildx engine does not answer `docker --host {host} info`: {setup} \
             (it starts dockerd 26 beside the default engine; log: /tmp/dockerd26.log)"
        )),
        // Without the containerd image store the docker driver refuses multi-platform
        // builds and cache export.
        Ok(info) if !info.contains("io.containerd.snapshotter") => missing.push(format!(
            "the engine at {host} does not use the containerd image store ({}): {setup} \
             (daemon.json: \"features\": {{\"containerd-snapshotter\": true}})",
            info.trim()
        )),
        Ok(_) => {}
    }
    let image = buildkit_image();
    if missing.is_empty()
        && cmd!(sh, "docker --host {host} image inspect {image}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_err()
    {
        missing.push(format!(
            "the engine at {host} has no {image} (the docker-container driver's BuildKit): {setup}"
        ));
    }
    if !plugin.is_file() {
        missing.push(format!("the buildx plugin {} is missing: {setup}", plugin.display()));
        return missing;
    }
    let config = tempfile::tempdir().expect("creating a temporary directory");
    std::os::unix::fs::symlink(&plugins, config.path().join("cli-plugins")).unwrap();
    let version =
        cmd!(sh, "docker buildx version").env("DOCKER_CONFIG", config.path()).quiet().ignore_stderr().read();
    if version.is_err() {
        missing.push(format!("`docker buildx version` fails with the plugin {}: {setup}", plugin.display()));
    }
    missing
}

/// One test's view of the buildx engine: its `DOCKER_HOST` and a private
/// `DOCKER_CONFIG` with the registry's credentials and the buildx plugin.
pub struct BuildxEnv {
    config: tempfile::TempDir,
    host: String,
    /// `127.0.0.1:PORT/`: the engine keeps what buildx pushes there; removed on drop.
    registry_prefix: String,
}

impl BuildxEnv {
    /// Panics naming the fix when the engine or the plugin is missing.
    pub fn new(registry: &TestRegistry) -> BuildxEnv {
        let missing = missing();
        assert!(missing.is_empty(), "the buildx builder is not ready:\n  - {}", missing.join("\n  - "));
        let config = tempfile::Builder::new().prefix("stigmer-buildx-config-").tempdir().unwrap();
        // Only this registry's login (written by `docker login` for the test).
        let logins = registry.docker_config().join("config.json");
        if logins.exists() {
            std::fs::copy(&logins, config.path().join("config.json")).unwrap();
        }
        std::os::unix::fs::symlink(plugins(), config.path().join("cli-plugins")).unwrap();
        BuildxEnv { config, host: docker_host(), registry_prefix: format!("{}/", registry.host()) }
    }

    pub fn docker_config(&self) -> &Path {
        self.config.path()
    }

    pub fn docker_host(&self) -> &str {
        &self.host
    }

    /// A docker-container builder made current in this config, as GitHub's
    /// docker/setup-buildx-action makes one: from the local BuildKit image, on the host's
    /// network (the test registries listen on 127.0.0.1), with `buildkitd_toml` as
    /// BuildKit's configuration. Removed, with its state, when the guard drops.
    pub fn container_builder(&self, name: &str, buildkitd_toml: &Path) -> ContainerBuilder<'_> {
        let sh = crate::shell();
        let image = format!("image={}", buildkit_image());
        crate::run_captured(
            self.cmd(cmd!(
                sh,
                "docker buildx create --name {name} --driver docker-container --driver-opt {image} --driver-opt network=host --config {buildkitd_toml} --use --bootstrap"
            )),
            "creating a docker-container builder",
        )
        .unwrap_or_else(|err| panic!("{err:#}"));
        ContainerBuilder { env: self, name: name.to_owned() }
    }

    /// `cmd` with this engine and config in its environment.
    pub fn cmd<'a>(&self, cmd: Cmd<'a>) -> Cmd<'a> {
        cmd.env("DOCKER_HOST", &self.host).env("DOCKER_CONFIG", self.config.path())
    }
}

impl Drop for BuildxEnv {
    /// The docker driver keeps every image it pushes in the engine's image store too:
    /// remove this test's (named after its registry, whose port no other live test has).
    fn drop(&mut self) {
        let sh = crate::shell();
        let format = "{{.Repository}}:{{.Tag}}";
        let listed = self.cmd(cmd!(sh, "docker image ls --format {format}")).quiet().ignore_stderr().read();
        let ours: Vec<&str> = listed
            .as_deref()
            .unwrap_or_default()
            .lines()
            .filter(|r| r.starts_with(&self.registry_prefix))
            .collect();
        if !ours.is_empty() {
            // Best effort, like ImageGuard: nothing here is worth a panic in drop.
            let _ = self
                .cmd(cmd!(sh, "docker image rm --force --no-prune {ours...}"))
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
    }
}

pub struct ContainerBuilder<'a> {
    env: &'a BuildxEnv,
    name: String,
}

impl Drop for ContainerBuilder<'_> {
    fn drop(&mut self) {
        let sh = crate::shell();
        let name = &self.name;
        // Best effort: a builder left behind is a stopped container, worth no panic here.
        let _ = self
            .env
            .cmd(cmd!(sh, "docker buildx rm --force {name}"))
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run();
    }
}

/// Builds the test SBOM scanner (`sbom_scanner.py`, BuildKit's SBOM generator protocol)
/// on the buildx engine from the amd64 test base in `registry`, which
/// `base_image::push_index` put there, and pushes it to `registry`; returns its
/// reference, for `--attest type=sbom,generator=REF`. BuildKit runs the scanner on the
/// build platform, whatever platforms it scans, so amd64 is enough.
pub fn sbom_scanner(env: &BuildxEnv, registry: &TestRegistry) -> String {
    let sh = crate::shell();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("sbom_scanner.py"), include_str!("sbom_scanner.py")).unwrap();
    let base = registry.repository("test-base:bookworm-amd64");
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {base}\n\
             COPY sbom_scanner.py /usr/local/bin/stigmer-sbom-scanner\n\
             ENTRYPOINT [\"python3\", \"/usr/local/bin/stigmer-sbom-scanner\"]\n"
        ),
    )
    .unwrap();
    let reference = registry.repository("sbom-scanner:test");
    let dir = context.path();
    crate::run_captured(
        env.cmd(cmd!(
            sh,
            "docker buildx build --platform linux/amd64 --provenance=false --sbom=false --push --tag {reference} {dir}"
        )),
        "building the test SBOM scanner on the buildx engine",
    )
    .unwrap_or_else(|err| panic!("{err:#}"));
    reference
}
