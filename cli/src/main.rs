//! `stigmer`: the runtime CLI. It runs the agent-runner container on this machine:
//! engine discovery (`engine`), image resolution (`image`) and pull progress
//! (`progress`), container lifecycle (`server`), logs (`logs`), state on disk (`home`),
//! build stamps (`build_info`, in the format of `stamp`), the newer-release notice
//! (`update`). This module only parses flags, dispatches, and maps errors to the exit
//! codes `--help` documents.

mod build_info;
mod engine;
mod flags;
mod home;
mod image;
mod logs;
mod progress;
mod server;
mod stamp;
mod update;

use std::process::ExitCode;

use clap::Parser;

use crate::flags::{Command, Server};

fn main() -> ExitCode {
    let flags = flags::Stigmer::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(flags));
    // Not waiting for blocking threads: a newer-release check still asking a slow
    // server (`update`) must not hold the command up; its curl ends by itself.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(err) => exit_code_for(&err),
    }
}

async fn run(flags: flags::Stigmer) -> anyhow::Result<ExitCode> {
    let Command::Server(command) = flags.command;
    // Before anything is written: no engine, no state files.
    let engine = engine::connect().await?;
    let home = home::Home::from_env()?;
    // Beside the command, so that it costs the command no time of its own.
    let update = update::start(&home);
    let code = run_command(command, &engine, &home).await?;
    if let Some(update) = update {
        update.finish().await;
    }
    Ok(code)
}

async fn run_command(
    command: Server,
    engine: &engine::Engine,
    home: &home::Home,
) -> anyhow::Result<ExitCode> {
    match command {
        Server::Start(start) => {
            let options = server::StartOptions {
                image: start.image,
                port: start.port,
                timeout: start.timeout,
                pinned_digest: build_info::image_digest(),
            };
            server::start(engine, home, options).await?;
        }
        Server::Stop(stop) => server::stop(engine, home, stop.timeout).await?,
        Server::Status(status) => {
            if !server::status(engine, home, status.json).await? {
                return Ok(ExitCode::from(4));
            }
        }
        Server::Logs(logs) => {
            let flags::Component::AgentRunner = logs.component;
            let request = logs::LogsRequest { follow: logs.follow, tail: logs.tail, since: logs.since };
            logs::logs(engine, home, request).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    }) {
        // The reader went away (`stigmer server status | head -1`): not our failure.
        return ExitCode::SUCCESS;
    }
    if let Some(unreachable) = err.downcast_ref::<engine::EngineUnreachable>() {
        eprintln!("{unreachable}");
        return ExitCode::from(3);
    }
    eprintln!("error: {err:#}");
    if err.downcast_ref::<server::Unhealthy>().is_some() {
        return ExitCode::from(4);
    }
    ExitCode::FAILURE
}
