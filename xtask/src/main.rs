//! `cargo xtask`: the build, test and release tooling of Stigmer, driven alike by a
//! maintainer and by GitHub Actions. `main` only parses flags and dispatches; each
//! subcommand owns a module.

mod base_image;
#[cfg(feature = "test-env")]
mod bench;
mod build;
mod dist;
mod files;
mod flags;
mod github;
mod human;
mod image;
mod plan;
mod platform;
mod pointer;
mod project;
mod publish;
mod registry;
mod release;
#[cfg(feature = "test-env")]
mod test;
mod version;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}`: the whole context chain on one line, and no backtrace even when
            // RUST_BACKTRACE is set: these errors are for users, not for debugging xtask.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let flags = flags::Xtask::parse();
    // Lets tests check that every `cargo xtask ...` line in the workflows and the
    // Makefile parses against the real flags, without running any of them.
    if std::env::var_os("XTASK_PARSE_ONLY").is_some() {
        return Ok(());
    }
    let sh = xshell::Shell::new()?;
    sh.change_dir(project::root());
    match flags.command {
        flags::Command::Plan(cmd) => cmd.run(&sh),
        flags::Command::Image(cmd) => cmd.run(&sh),
        flags::Command::BaseImage(cmd) => cmd.run(&sh),
        flags::Command::VerifyImage(cmd) => cmd.run(&sh),
        flags::Command::VerifyRelease(cmd) => cmd.run(&sh),
        flags::Command::Dist(cmd) => cmd.run(&sh),
        flags::Command::Checksums(cmd) => cmd.run(&sh),
        flags::Command::Release(cmd) => cmd.run(&sh),
        flags::Command::ReleaseNotes(cmd) => cmd.run(&sh),
        flags::Command::Homebrew(cmd) => cmd.run(&sh),
        flags::Command::GithubRelease(cmd) => cmd.run(&sh),
        #[cfg(feature = "test-env")]
        flags::Command::Bench(cmd) => cmd.run(&sh),
        #[cfg(feature = "test-env")]
        flags::Command::Test(cmd) => cmd.run(&sh),
        #[cfg(not(feature = "test-env"))]
        flags::Command::Bench(_) | flags::Command::Test(_) => anyhow::bail!(
            "this xtask was built without the test environment (`cargo build -p xtask`, as \
             release.yml builds it); run `cargo xtask test` or `cargo xtask bench`, which \
             build it with `--features test-env`"
        ),
    }
}
