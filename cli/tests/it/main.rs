//! Integration tests of `stigmer`: the real binary against each real engine, the real
//! agent-runner image built from the test base, and a real registry for pulls.

mod engine;
mod progress;
mod server;
mod update_check;
mod upgrade;

use std::{
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::Output,
};

use test_support::{engine::Engine, unique_name};
use xshell::{cmd, Cmd, Shell};

const STIGMER: &str = env!("CARGO_BIN_EXE_stigmer");

/// One isolated agent-runner installation on one engine: its own home, container name
/// and port, so tests run in parallel. Dropping it removes whatever it left in the
/// engine.
pub(crate) struct Instance {
    pub(crate) home: tempfile::TempDir,
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) image: Option<String>,
    /// Its `docker` commands, and the `stigmer` it runs, reach `engine`.
    pub(crate) sh: Shell,
}

impl Instance {
    /// Runs the agent-runner test image.
    pub(crate) fn new(engine: Engine) -> Instance {
        let mut instance = Instance::without_image(engine);
        let image = test_support::base_image::agent_runner_image(env!("CARGO_PKG_VERSION"));
        engine.provide(&image);
        instance.image = Some(image);
        instance
    }

    /// Leaves the image to the CLI's own choice (local, then registry).
    pub(crate) fn without_image(engine: Engine) -> Instance {
        Instance {
            home: tempfile::tempdir().unwrap(),
            name: unique_name("stigmer-it"),
            port: free_port(),
            image: None,
            sh: engine.shell(),
        }
    }

    pub(crate) fn stigmer(&self, args: &[&str]) -> Cmd<'_> {
        self.env(cmd!(self.sh, "{STIGMER} {args...}"))
    }

    /// This instance's environment on a command that runs stigmer (through another
    /// program, such as a pseudo-terminal or a change of user).
    pub(crate) fn env<'a>(&self, cmd: Cmd<'a>) -> Cmd<'a> {
        let mut cmd = cmd
            .env("STIGMER_HOME", self.home.path())
            .env("STIGMER_AGENT_RUNNER_NAME", &self.name)
            .env("STIGMER_AGENT_RUNNER_PORT", self.port.to_string())
            .env_remove("STIGMER_AGENT_RUNNER_IMAGE")
            .env_remove("STIGMER_REGISTRY")
            // A stamped test binary (upgrade.rs) would ask GitHub for newer releases;
            // update_check.rs turns the notice back on against its own server.
            .env("STIGMER_NO_UPDATE_CHECK", "1");
        if let Some(image) = &self.image {
            cmd = cmd.env("STIGMER_AGENT_RUNNER_IMAGE", image);
        }
        cmd
    }

    pub(crate) fn id_file(&self) -> PathBuf {
        self.home.path().join("data/agent-runner-container.id")
    }

    /// Containers of this instance's home, running or not: `(name, state)`.
    pub(crate) fn containers(&self) -> Vec<(String, String)> {
        let label = format!("label=dev.stigmer.home={}", self.home.path().display());
        let format = "{{.Names}} {{.State}}";
        let sh = &self.sh;
        cmd!(sh, "docker ps --all --filter {label} --format {format}")
            .read()
            .unwrap()
            .lines()
            .map(|line| {
                let (name, state) = line.split_once(' ').unwrap();
                (name.to_owned(), state.to_owned())
            })
            .collect()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let sh = &self.sh;
        let label = format!("label=dev.stigmer.home={}", self.home.path().display());
        let ids = cmd!(sh, "docker ps --all --quiet --filter {label}").read().unwrap_or_default();
        // And whatever a test ran under this instance's (unique) name itself.
        let name = format!("name=^{}$", self.name);
        let named = cmd!(sh, "docker ps --all --quiet --filter {name}").read().unwrap_or_default();
        let mut ids: Vec<&str> = ids.lines().chain(named.lines()).collect();
        ids.sort_unstable();
        ids.dedup();
        if !ids.is_empty() {
            let _ = cmd!(sh, "docker rm --force --volumes {ids...}").quiet().ignore_stdout().run();
        }
        let local = format!("{}:local", self.name);
        let _ = cmd!(sh, "docker image rm --no-prune {local}").quiet().ignore_stdout().ignore_stderr().run();
    }
}

/// Declares each test function, which takes the engine, once per engine: in modules
/// `docker20`, `docker26` and `podman`, so `-E 'test(podman::)'` runs one engine's.
macro_rules! on_every_engine {
    ($($test:ident),* $(,)?) => {
        on_every_engine!(@on docker20 Docker20 $($test),*);
        on_every_engine!(@on docker26 Docker26 $($test),*);
        on_every_engine!(@on podman Podman $($test),*);
    };
    (@on $module:ident $engine:ident $($test:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test(test_support::engine::Engine::$engine)
                }
            )*
        }
    };
}
pub(crate) use on_every_engine;

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

pub(crate) fn run(cmd: Cmd<'_>) -> Output {
    cmd.ignore_status().quiet().output().expect("spawning stigmer")
}

pub(crate) fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[track_caller]
pub(crate) fn run_ok(cmd: Cmd<'_>) -> String {
    let shown = cmd.to_string();
    let output = run(cmd);
    assert!(output.status.success(), "`{shown}` failed ({}):\n{}", output.status, text(&output));
    text(&output)
}
