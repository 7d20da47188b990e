//! Integration tests of `cargo xtask`: they run the real binary against a real engine,
//! real registries and real git repositories (see `xtask/test-support`).

mod dist;
mod help;
mod image;
mod install;
mod invariants;
mod publish;
mod rehearsal;
mod release;
mod release_artifacts;
mod test_command;
mod tidy;
mod verify;
mod verify_release;
mod workflows;

use std::process::Output;

use xshell::Cmd;

/// The `xtask` binary this test run built.
pub(crate) const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

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
