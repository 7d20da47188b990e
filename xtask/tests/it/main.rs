//! Integration tests of `cargo xtask`: they run the real binary against a real engine,
//! real registries and real git repositories (see `xtask/test-support`).

mod base_image;
mod dist;
mod help;
mod image;
mod install;
mod invariants;
mod publish;
mod rehearsal;
mod release;
mod release_artifacts;
mod reproducible;
mod sigstore_bundle;
mod test_command;
mod tidy;
mod verify;
mod verify_release;
mod windows;
mod workflows;

use std::process::Output;

use xshell::{cmd, Cmd};

/// The `xtask` binary this test run built.
pub(crate) const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// A sha256 in hex, as checksums.txt and registry digests spell it.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Copies the files directly in `from` (a release's assets: no subdirectories) into `to`.
pub(crate) fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Runs a command and returns its output, whatever its exit status.
pub(crate) fn run(cmd: Cmd<'_>) -> Output {
    cmd.ignore_status().quiet().output().expect("spawning the command")
}

/// Asserts success and returns stdout + stderr, both shown on failure.
#[track_caller]
pub(crate) fn run_ok(cmd: Cmd<'_>) -> String {
    let shown = cmd.to_string();
    let output = run(cmd);
    let text = combined(&output);
    assert!(output.status.success(), "`{shown}` failed ({}):\n{text}", output.status);
    text
}

/// Asserts failure and returns stdout + stderr.
#[track_caller]
pub(crate) fn run_err(cmd: Cmd<'_>) -> String {
    let shown = cmd.to_string();
    let output = run(cmd);
    let text = combined(&output);
    assert!(!output.status.success(), "`{shown}` succeeded but should have failed:\n{text}");
    text
}

fn combined(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// One test as `cargo nextest list` names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Listed {
    /// `xtask::it`, `xtask::bin/xtask`, `test-support` (a library's unit tests).
    pub(crate) binary: String,
    /// `lib`, `bin` or `test` (an integration-test binary).
    pub(crate) kind: String,
    pub(crate) name: String,
    /// The package's directory.
    pub(crate) package_dir: std::path::PathBuf,
}

/// The tests nextest selects with `args` (a `--profile`, a `--partition`), from the
/// build `cargo xtask test` makes: the workspace with `xtask/test-env`, so that under
/// it nothing is rebuilt while tests run.
pub(crate) fn nextest_list(args: &[&str]) -> Vec<Listed> {
    assert!(
        test_support::on_path("cargo-nextest"),
        "`cargo nextest` is missing: cargo install cargo-nextest --locked"
    );
    let sh = test_support::shell();
    let mut list =
        cmd!(sh, "cargo nextest list --workspace --features xtask/test-env --cargo-quiet -T json {args...}");
    // Without what cargo sets for this test binary: ring's build script reruns when
    // CARGO_MANIFEST_DIR or a CARGO_PKG_* changes, and with it rustls, reqwest and xtask
    // would be rebuilt (20 s), and again by the next build from a shell.
    for (name, _) in std::env::vars() {
        let prefixes = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
            "CARGO_TARGET_TMPDIR",
        ];
        if prefixes.iter().any(|prefix| name.starts_with(prefix)) {
            list = list.env_remove(name);
        }
    }
    let json = list.read().unwrap_or_else(|err| panic!("listing the tests with nextest: {err}"));
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut tests = Vec::new();
    for suite in list["rust-suites"].as_object().unwrap().values() {
        for (name, test) in suite["testcases"].as_object().unwrap() {
            if test["filter-match"]["status"] == "matches" {
                tests.push(Listed {
                    binary: suite["binary-id"].as_str().unwrap().to_owned(),
                    kind: suite["kind"].as_str().unwrap().to_owned(),
                    name: name.clone(),
                    package_dir: suite["cwd"].as_str().unwrap().into(),
                });
            }
        }
    }
    tests.sort();
    tests
}

/// The first line of test code (comments aside) that needs an engine, a registry or a
/// cross-build: it names the harness that starts one, or runs xtask's cross-building
/// `dist` for real. test_command.rs checks nextest's `quick` profile with it; it lives
/// here because no test module may name these words in its own code.
pub(crate) fn needs_an_engine(code: &str) -> Option<&str> {
    const HARNESS: [&str; 10] = [
        "TestRegistry",
        "require_engine",
        "Instance",
        "base_image::",
        "engine::",
        "buildx::",
        "cosign::",
        "dist_builds_lock",
        "zigbuild",
        "--snapshot",
    ];
    code.lines().map(str::trim).filter(|line| !line.starts_with("//")).find(|line| {
        HARNESS.iter().any(|word| line.contains(word))
            || (line.contains("{XTASK} dist") && !line.contains("XTASK_PARSE_ONLY"))
    })
}
