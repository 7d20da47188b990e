//! Command-line flags of `cargo xtask`: one clap args struct per subcommand, nothing
//! else. Each struct's `run` lives in the module named after the subcommand.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::platform::Platform;

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
    VerifyImage(VerifyImage),
    Release(Release),
    Bench(Bench),
    Test(Test),
}

/// Measure what the old pipeline was judged by, against our targets.
///
/// Each figure is measured several times (median, min, max) and printed beside its target
/// and the seed's old figure where there is one: image build cold and warm, bytes over the
/// base, build context, `stigmer server start` to healthy, `status`, idle memory, an
/// unchanged multi-arch re-push (blob bytes), `verify-image` requests and time. Results go
/// to target/bench/results.json and results.md. Needs the engine and the test base images.
#[derive(Args)]
pub struct Bench {
    /// Run each measurement once (the test suite does, to prove the bench works)
    #[arg(long)]
    pub quick: bool,

    /// How many times to measure each figure
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub runs: usize,

    /// The base image to build on [default: the amd64 test base]
    #[arg(long, value_name = "REF")]
    pub base_image: Option<String>,

    /// Where to write results.json and results.md
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub out: std::path::PathBuf,
}

/// Cut a release: bump the version, roll the changelog over, commit and tag.
///
/// Refuses, naming the fix and changing nothing, unless: the work tree is clean, HEAD
/// is on the release branch and not behind origin, the tag is new, CHANGELOG.md's
/// Unreleased section lists something, and the version grows. Then it sets the version
/// in Cargo.toml, Cargo.lock and agent-runner/pyproject.toml (formatting kept), moves
/// Unreleased to `## [X.Y.Z] - YYYY-MM-DD` (UTC), commits `release: vX.Y.Z`, makes an
/// annotated tag, and with --push pushes both at once (which starts the release
/// workflow). Run it again after a failure: it finishes what is left.
///
/// Bumps follow semver literally, 0.x included: from 0.4.2, `minor` gives 0.5.0 and
/// `major` gives 1.0.0. `rc` starts a candidate of the next minor (1.2.3 gives
/// 1.3.0-rc.1) or increments one (1.3.0-rc.1 gives 1.3.0-rc.2); any other bump from a
/// candidate releases it (1.3.0-rc.2 with `minor` or `patch` gives 1.3.0).
#[derive(Args)]
pub struct Release {
    /// major, minor, patch, rc, or an explicit version (1.4.0)
    #[arg(long, value_name = "KIND|X.Y.Z")]
    pub bump: crate::release::Bump,

    /// Print the plan and the diff of every file it would change; write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Push the release commit and the tag to origin
    #[arg(long)]
    pub push: bool,

    /// The branch releases are cut from
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    pub branch: String,
}

/// Build the agent-runner image, locally or for every platform into a registry.
///
/// `--local` builds one platform (this machine's by default) into the local engine and
/// tags it `stigmer-agent-runner:local` and `stigmer-agent-runner:vX.Y.Z`, the names
/// `stigmer server start` looks for first. It ends with the image id, its size over the
/// base, the time taken and how many layers were reused.
///
/// `--push` builds linux/amd64 and linux/arm64 and publishes REGISTRY/agent-runner:
/// first `vX.Y.Z`, then verifies it with the OCI client, and only then points `latest`,
/// `vX.Y` and `vX` at the same digest (never for a pre-release such as v1.3.0-rc.1). A
/// rerun after a failure finishes the job; blobs the registry has are not sent again.
/// Credentials: --username with --password-stdin, else GITHUB_TOKEN/GITHUB_ACTOR (ghcr.io
/// only), else the Docker config and its credential helpers, else anonymous.
#[derive(Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["local", "push"])))]
pub struct Image {
    /// Build one platform into the local engine
    #[arg(long)]
    pub local: bool,

    /// Build every platform and publish them to the registry as one index
    #[arg(long)]
    pub push: bool,

    /// Platforms, comma-separated (linux/amd64, linux/arm64) [default: this machine's
    /// with --local, both with --push]; a foreign one runs under qemu emulation
    #[arg(long, value_name = "OS/ARCH", value_delimiter = ',')]
    pub platform: Vec<Platform>,

    /// The base image of both Dockerfile stages
    #[arg(long, value_name = "REF", default_value = "python:3.11-slim")]
    pub base_image: String,

    /// The local image name to tag (`NAME:local` and `NAME:vX.Y.Z`)
    #[arg(long, value_name = "NAME", default_value = "stigmer-agent-runner", conflicts_with = "push")]
    pub name: String,

    /// The build context holding the Dockerfile [default: agent-runner/]
    #[arg(long, value_name = "DIR")]
    pub context: Option<std::path::PathBuf>,

    /// The registry and namespace to publish to; the image is REGISTRY/agent-runner
    #[arg(long, value_name = "REGISTRY", default_value = "ghcr.io/stigmer", requires = "push")]
    pub registry: String,

    /// The version to publish, vX.Y.Z [default: the workspace version]
    #[arg(long, value_name = "vX.Y.Z", requires = "push")]
    pub version: Option<String>,

    /// Publish `vX.Y.Z` only: leave `latest`, `vX.Y` and `vX` where they are
    #[arg(long, requires = "push")]
    pub no_latest: bool,

    /// How to build: buildx when `docker buildx version` works, else the engine
    #[arg(long, value_enum, default_value_t = BuilderChoice::Auto, requires = "push")]
    pub builder: BuilderChoice,

    /// The registry user; the password is read from standard input
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,

    /// Read the registry password (or token) from standard input
    #[arg(long, requires = "username")]
    pub password_stdin: bool,

    /// buildx cache sources (e.g. type=gha) [default: type=gha inside GitHub Actions]
    #[arg(long, value_name = "CACHE", requires = "push")]
    pub cache_from: Vec<String>,

    /// buildx cache destinations (e.g. type=gha,mode=max) [default: type=gha,mode=max
    /// inside GitHub Actions]
    #[arg(long, value_name = "CACHE", requires = "push")]
    pub cache_to: Vec<String>,

    /// Print the plan (tags, platforms, builder, credentials source) and change nothing
    #[arg(long, requires = "push")]
    pub dry_run: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BuilderChoice {
    Auto,
    Buildx,
    Engine,
}

/// Check a pushed image with the OCI client, and exit non-zero naming what is wrong.
///
/// Checks that REF is an OCI image index or Docker manifest list holding exactly the
/// expected platforms (attestation manifests are recognised and reported apart), that
/// each platform's config names the os/architecture of its descriptor, that every blob
/// exists with its declared size and digest (every byte is fetched and hashed), and that
/// the --same-digest-as references resolve to the same index.
#[derive(Args)]
pub struct VerifyImage {
    /// The image to check, e.g. ghcr.io/stigmer/agent-runner:v1.2.3
    #[arg(value_name = "REF")]
    pub reference: String,

    /// The platforms that must be there and no others [default: linux/amd64,linux/arm64]
    #[arg(long, value_name = "OS/ARCH", value_delimiter = ',')]
    pub platform: Vec<Platform>,

    /// Another reference in the same repository that must resolve to the same digest
    /// (repeatable), e.g. ghcr.io/stigmer/agent-runner:latest
    #[arg(long, value_name = "REF")]
    pub same_digest_as: Vec<String>,

    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
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
