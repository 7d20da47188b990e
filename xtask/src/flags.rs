//! Command-line flags of `cargo xtask`: one clap args struct per subcommand, nothing
//! else. Each struct's `run` lives in the module named after the subcommand.

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, test and release Stigmer: the `stigmer` CLI and the agent-runner image",
    version
)]
pub struct Xtask {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    Image(Image),
    Test(Test),
}

/// Build the agent-runner image.
///
/// `--local` builds it for one platform (this machine's by default) into the local
/// engine and tags it `stigmer-agent-runner:local` and `stigmer-agent-runner:vX.Y.Z`,
/// the names `stigmer server start` looks for first. It ends with the image id, its size
/// over the base, the time taken and how many layers were reused.
#[derive(Args)]
pub struct Image {
    /// Build into the local engine (the only mode so far)
    #[arg(long, required = true)]
    pub local: bool,

    /// Build for this platform instead of the host's (linux/amd64 or linux/arm64; a
    /// foreign one runs under qemu emulation)
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<crate::platform::Platform>,

    /// The base image of both Dockerfile stages
    #[arg(long, value_name = "REF", default_value = "python:3.11-slim")]
    pub base_image: String,

    /// The local image name to tag (`NAME:local` and `NAME:vX.Y.Z`)
    #[arg(long, value_name = "NAME", default_value = "stigmer-agent-runner")]
    pub name: String,
}

/// Run every test against real parts: the command CI runs.
///
/// Checks prerequisites (and says how to install what is missing), builds missing test
/// base images, then runs rustfmt, clippy, every workspace test and the agent-runner's
/// pytest suite against a real Docker Engine and real registries.
#[derive(Args)]
pub struct Test {
    /// Only check prerequisites and build the test base images (Debian bookworm with
    /// python3, linux/amd64 and linux/arm64), then stop.
    #[arg(long)]
    pub only_base_images: bool,

    /// Arguments for the Rust test runner, e.g. a test name filter
    /// (`cargo xtask test -- registry`). With a filter, rustfmt, clippy and pytest are
    /// skipped.
    #[arg(last = true)]
    pub test_args: Vec<String>,
}
