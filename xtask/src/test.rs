//! `cargo xtask test`: the one test command (README and CI run exactly this). Checks
//! that every real part the tests need is there and says how to get what is missing,
//! builds the test base images, then runs every suite and reports each one's result.
//! It never skips a suite because a tool is missing: that is a failure with a fix.

use std::path::Path;

use anyhow::bail;
use xshell::{cmd, Shell};

use crate::flags;

impl flags::Test {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        check_prerequisites(sh)?;
        for arch in test_support::base_image::ARCHES {
            test_support::base_image::ensure(sh, arch)?;
        }
        if self.only_base_images {
            return Ok(());
        }

        let filtered = !self.test_args.is_empty();
        let mut results: Vec<(&str, bool)> = Vec::new();
        if !filtered {
            results.push(("rustfmt", step(cmd!(sh, "cargo fmt --all --check"))));
            results.push((
                "clippy",
                step(cmd!(sh, "cargo clippy --workspace --all-targets --quiet -- -D warnings")),
            ));
        }
        let test_args = &self.test_args;
        let rust_tests = if has_nextest(sh) {
            cmd!(sh, "cargo nextest run --workspace --no-fail-fast {test_args...}")
        } else {
            cmd!(sh, "cargo test --workspace --no-fail-fast {test_args...}")
        };
        results.push(("rust tests", step(rust_tests)));
        if !filtered {
            results.push(("pytest", pytest(sh)));
        }

        eprintln!("\nsummary:");
        for (name, ok) in &results {
            eprintln!("  {name:<12} {}", if *ok { "ok" } else { "FAILED" });
        }
        let failed: Vec<&str> = results.iter().filter(|(_, ok)| !ok).map(|(name, _)| *name).collect();
        if !failed.is_empty() {
            bail!("failed: {}", failed.join(", "));
        }
        Ok(())
    }
}

/// Runs one suite with its output streaming through; a failure is recorded, not
/// returned, so that every suite reports.
fn step(cmd: xshell::Cmd<'_>) -> bool {
    eprintln!("\n==> {cmd}");
    cmd.run().is_ok()
}

/// The agent-runner's suite, in the environment its lock file pins (dev group too).
fn pytest(sh: &Shell) -> bool {
    let _dir = sh.push_dir("agent-runner");
    step(cmd!(sh, "uv sync --frozen --quiet")) && step(cmd!(sh, "uv run --frozen pytest -q"))
}

fn has_nextest(sh: &Shell) -> bool {
    cmd!(sh, "cargo nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// Every missing part at once, each with how to get it: one round trip, not five.
fn check_prerequisites(sh: &Shell) -> anyhow::Result<()> {
    let setup = "run `bash ci/setup.sh` (Debian: installs and starts everything below)";
    let mut missing = Vec::new();
    for (program, package) in [
        ("docker", "docker.io"),
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("debootstrap", "debootstrap"),
        ("python3", "python3 python3-venv"),
        // The agent-runner's durability test watches its system calls.
        ("strace", "strace"),
    ] {
        if !test_support::on_path(program) {
            missing.push(format!("`{program}` is not on PATH: apt-get install {package}"));
        }
    }
    if !test_support::on_path("uv") {
        missing.push("`uv` is not on PATH (the agent-runner's lock tool): pip install uv".to_owned());
    }
    let format = "{{.ServerVersion}}";
    if cmd!(sh, "docker info --format {format}").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        missing.push(
            "the Docker Engine does not answer `docker info`: start it \
             (`dockerd >/tmp/dockerd.log 2>&1 &`, or `systemctl start docker`)"
                .to_owned(),
        );
    }
    // The buildx builder's engine: on our machines dockerd 26 beside the default one,
    // from Debian 13's packages, which ci/setup.sh unpacks.
    missing.extend(test_support::buildx::missing());
    if !Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        missing.push(
            "no qemu binfmt handler for arm64: apt-get install qemu-user-static binfmt-support \
             && update-binfmts --enable qemu-aarch64"
                .to_owned(),
        );
    }
    if missing.is_empty() {
        return Ok(());
    }
    bail!("the test environment is not ready; {setup}, or fix each:\n  - {}", missing.join("\n  - "))
}
