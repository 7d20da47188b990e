//! `stigmer`: the runtime CLI. It runs the agent-runner container on this machine
//! (engine discovery, image resolution, container lifecycle, logs). This module only
//! parses flags, dispatches and maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;

/// Run Stigmer's agent-runner on this machine.
#[derive(Parser)]
#[command(name = "stigmer", version, about)]
struct Stigmer {}

fn main() -> ExitCode {
    let _flags = Stigmer::parse();
    ExitCode::SUCCESS
}
