//! Command-line flags of `cargo xtask`: one clap args struct per subcommand, nothing
//! else. Each struct's `run` lives in the module named after the subcommand.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use std::path::PathBuf;

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
    Plan(Plan),
    Image(Image),
    BaseImage(BaseImage),
    VerifyImage(VerifyImage),
    VerifyRelease(VerifyRelease),
    Dist(Dist),
    Checksums(Checksums),
    Release(Release),
    ReleaseNotes(ReleaseNotes),
    Homebrew(Homebrew),
    GithubRelease(GithubRelease),
    Bench(Bench),
    Test(Test),
}

/// Print the release plan: what a release of a version publishes and moves.
///
/// The plan names the version and its kind (release, pre-release, or a dry run's
/// snapshot), the image repository and platforms, whether `vX.Y.Z` is published
/// already (a rerun then reuses it), which of `latest`, `vX.Y` and `vX` move (each only
/// forward: a backport v1.2.4 after v1.3.0 moves `v1.2` alone), the CLI archives, and
/// whether the Homebrew formula and GitHub's Latest move. It is computed from git's
/// release tags and what the registry's tags name now, and changes nothing.
///
/// In release.yml the first job writes it (`--github --out plan.json`) and every later
/// job reads it with `--plan plan.json`.
#[derive(Args)]
pub struct Plan {
    /// The version to plan, vX.Y.Z [default: the workspace version]
    #[arg(long, value_name = "vX.Y.Z", conflicts_with = "github")]
    pub version: Option<String>,

    /// Plan a dry run: every command given the plan prints what it would do and
    /// publishes nothing. Without --version: this commit's snapshot version
    /// (X.Y.(Z+1)-snapshot-<sha>)
    #[arg(long, conflicts_with = "github")]
    pub dry_run: bool,

    /// Take the version from the GitHub Actions event: a `v*` tag releases that tag
    /// (which must be the workspace version); workflow_dispatch with DRY_RUN_INPUT=true
    /// plans a dry run. Writes version, prerelease, dry-run and homebrew to $GITHUB_OUTPUT
    #[arg(long)]
    pub github: bool,

    /// The registry and namespace the image is published to
    #[arg(long, value_name = "REGISTRY", default_value = "ghcr.io/stigmer")]
    pub registry: String,

    /// Also write the plan as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print the plan as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Measure what the old pipeline was judged by, against our targets.
///
/// Each figure is measured several times (median, min, max) and printed beside its target
/// and the seed's old figure where there is one: image build cold and warm, bytes over the
/// base, build context, `stigmer server start` to healthy, `status`, idle memory, an
/// unchanged multi-arch re-push (blob bytes), `verify-image` requests and time, CLI binary
/// and tarball size per target, `release --snapshot` warm, and arm64 build time over amd64
/// (dependencies prepared on the build platform, and emulated). Results go
/// to target/bench/results.json and results.md. Needs the engine and the test base images.
/// Exits non-zero when a target is missed (after writing every result), unless --no-fail.
#[derive(Args)]
pub struct Bench {
    /// Exit 0 even when a target is missed: for exploring, and for the test suite, which
    /// checks what is measured, never how fast
    #[arg(long)]
    pub no_fail: bool,

    /// Run each measurement once, CLI sizes for this machine's target only, and no
    /// emulated arm64 build (the test suite does, to prove the bench works)
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
    pub out: PathBuf,
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
///
/// `--snapshot` runs the whole pipeline locally and publishes nothing: version
/// X.Y.(Z+1)-snapshot-<short sha>, the agent-runner image for this machine into the local
/// engine, CLI archives (this machine's target, every target with --all-targets),
/// checksums, release notes and the Homebrew formula, all in dist/.
#[derive(Args)]
#[command(group(ArgGroup::new("kind").required(true).args(["bump", "snapshot"])))]
pub struct Release {
    /// major, minor, patch, rc, or an explicit version (1.4.0)
    #[arg(long, value_name = "KIND|X.Y.Z")]
    pub bump: Option<crate::version::Bump>,

    /// Build every artifact of a release into dist/ without tagging or publishing
    #[arg(long, conflicts_with_all = ["push", "dry_run"])]
    pub snapshot: bool,

    /// With --snapshot: build the CLI for every dist target, not only this machine's
    #[arg(long, requires = "snapshot")]
    pub all_targets: bool,

    /// With --snapshot: the directory to write into
    #[arg(long, value_name = "DIR", default_value = "dist", requires = "snapshot")]
    pub out: PathBuf,

    /// With --snapshot: build on this base image instead of the one agent-runner/Dockerfile
    /// pins (`cargo xtask base-image` prints it)
    #[arg(long, value_name = "REF", requires = "snapshot")]
    pub base_image: Option<String>,

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
/// `vX.Y` and `vX` at the same digest, each only forward (`cargo xtask plan` says which
/// move; never for a pre-release such as v1.3.0-rc.1). A published version never
/// changes: when `vX.Y.Z` exists it is verified and reused, nothing is rebuilt, and a
/// merge of other digests is refused. A rerun after a failure finishes the job.
/// Credentials: --username with --password-stdin, else GITHUB_TOKEN/GITHUB_ACTOR (ghcr.io
/// only), else the Docker config and its credential helpers, else anonymous.
///
/// No build step runs code of the target platform: the dependencies are wheels chosen
/// for it on the build platform (BuildKit: the Dockerfile's `prepare` stage on
/// $BUILDPLATFORM; the engine builder: pip on this machine), so an arm64 image costs
/// about what an amd64 one does. A dependency without a wheel for a platform stops the
/// build, naming both; `--allow-emulation` installs inside the target platform instead.
///
/// On one runner per platform: `--push --platform P --by-digest` on each prints a
/// digest, then `--merge DIGEST...` assembles, verifies and tags the index.
#[derive(Args)]
#[command(group(ArgGroup::new("mode").required(true).args(["local", "push", "merge"])))]
#[command(group(ArgGroup::new("publishing").args(["push", "merge"]).multiple(false)))]
pub struct Image {
    /// Build one platform into the local engine
    #[arg(long)]
    pub local: bool,

    /// Build every platform and publish them to the registry as one index
    #[arg(long)]
    pub push: bool,

    /// With --push and one --platform: push that platform's image by digest, with no
    /// tag, and print the digest (the only line on stdout) for --merge
    #[arg(long, requires = "push")]
    pub by_digest: bool,

    /// Publish the platform images that `--push --by-digest` runs pushed (sha256:...,
    /// comma-separated or repeated) as one index: `vX.Y.Z`, verification, then the
    /// aliases, exactly as --push does. Builds nothing
    #[arg(long, value_name = "DIGEST", value_delimiter = ',', num_args = 1..)]
    pub merge: Vec<String>,

    /// Platforms, comma-separated (linux/amd64, linux/arm64) [default: this machine's
    /// with --local, both with --push and --merge]. With --merge, the index must hold
    /// exactly these
    #[arg(long, value_name = "OS/ARCH", value_delimiter = ',')]
    pub platform: Vec<Platform>,

    /// Install the dependencies inside the target platform's base image, under qemu
    /// emulation for a foreign platform: several times slower, but pip may build a
    /// dependency that has no wheel for the platform from its source
    #[arg(long)]
    pub allow_emulation: bool,

    /// Build every Dockerfile stage on this base image instead [default: the plan's base,
    /// else the one agent-runner/Dockerfile pins by digest: `cargo xtask base-image`]
    #[arg(long, value_name = "REF")]
    pub base_image: Option<String>,

    /// The local image name to tag (`NAME:local` and `NAME:vX.Y.Z`)
    #[arg(long, value_name = "NAME", default_value = "stigmer-agent-runner", conflicts_with = "publishing")]
    pub name: String,

    /// The build context holding the Dockerfile [default: agent-runner/]
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,

    /// The registry and namespace to publish to; the image is REGISTRY/agent-runner
    #[arg(long, value_name = "REGISTRY", default_value = "ghcr.io/stigmer", requires = "publishing")]
    pub registry: String,

    /// The version to publish, vX.Y.Z [default: the workspace version]
    #[arg(long, value_name = "vX.Y.Z", requires = "publishing", conflicts_with = "plan")]
    pub version: Option<String>,

    /// The release plan (`cargo xtask plan --out`): version, repository and which
    /// floating tags may move come from it [default: computed here]
    #[arg(long, value_name = "FILE", requires = "publishing")]
    pub plan: Option<PathBuf>,

    /// Publish `vX.Y.Z` only: leave `latest`, `vX.Y` and `vX` where they are
    #[arg(long, requires = "publishing")]
    pub no_latest: bool,

    /// How to build: buildx when its builder can make this image (a docker-container or
    /// remote driver; the docker driver only on the containerd image store, and never
    /// --by-digest), else the engine; --dry-run says which and why
    #[arg(long, value_enum, default_value_t = BuilderChoice::Auto, requires = "push")]
    pub builder: BuilderChoice,

    /// The registry user; the password is read from standard input
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,

    /// Read the registry password (or token) from standard input
    #[arg(long, requires = "username")]
    pub password_stdin: bool,

    /// buildx cache sources (e.g. type=registry,ref=REPO:cache) [default: none]
    #[arg(long, value_name = "CACHE", requires = "push")]
    pub cache_from: Vec<String>,

    /// Build every step again, taking no layer from a cache (the engine's, buildx's, or
    /// --cache-from): a rebuild that checks a release is reproducible
    #[arg(long, requires = "push")]
    pub no_cache: bool,

    /// buildx cache destinations (e.g. type=registry,mode=max,ref=REPO:cache) [default:
    /// none]
    #[arg(long, value_name = "CACHE", requires = "push")]
    pub cache_to: Vec<String>,

    /// With buildx: the image BuildKit runs to make the SBOM attestation (BuildKit's SBOM
    /// scanner protocol) [default: BuildKit's own, docker/buildkit-syft-scanner]
    #[arg(long, value_name = "REF", requires = "push")]
    pub sbom_generator: Option<String>,

    /// Sign the verified index by digest with this cosign private key (password in
    /// COSIGN_PASSWORD), with no transparency log, before any floating tag moves
    #[arg(long, value_name = "FILE", requires = "publishing", conflicts_with = "keyless")]
    pub cosign_key: Option<PathBuf>,

    /// Sign the verified index by digest keyless (in GitHub Actions: the workflow's OIDC
    /// identity, which needs `id-token: write`), before any floating tag moves
    #[arg(long, requires = "publishing")]
    pub keyless: bool,

    /// Print the plan (tags, platforms, builder, credentials source) and change nothing
    /// in the registry; with --by-digest, also build the platform (as release.yml's dry
    /// run does, so that the builder, the base and the login are tried) and push nothing
    #[arg(long, requires = "publishing")]
    pub dry_run: bool,
}

/// Print the agent-runner's base image pin, or move it to what its tag names now.
///
/// agent-runner/Dockerfile names the base in one line, `ARG BASE_IMAGE=NAME:TAG@sha256:...`:
/// the tag says what to follow, the digest (of the tag's multi-arch index) is what every
/// build uses, what the release plan records and what the image's
/// `org.opencontainers.image.base.name` and `.base.digest` labels say. A pin without a
/// digest is refused by every command that builds.
///
/// Without --bump this prints the pin. `--bump` asks the registry (anonymously) which
/// index the tag names now. When it is the pinned one, it says the pin is current and
/// writes nothing. Otherwise it rewrites that one line of the Dockerfile (atomically:
/// the old file or the new one, never half) and reports the old and new index digests
/// and, for linux/amd64 and linux/arm64, each image's digest and what its config says
/// differently (`created`, changed `Env` entries such as PYTHON_VERSION, new layers).
/// Commit the change and build: the base moves only when someone bumps it.
#[derive(Args)]
pub struct BaseImage {
    /// Resolve the tag's current index digest and rewrite the pin when it moved
    #[arg(long)]
    pub bump: bool,

    /// With --bump: read the tag from this copy instead (a mirror, e.g.
    /// 127.0.0.1:5000/library/NAME:TAG); the pin keeps the name it has and takes the
    /// digest, so the copy must hold the same index bytes
    #[arg(long, value_name = "REF", requires = "bump")]
    pub from: Option<String>,

    /// With --bump: report what would change; write nothing
    #[arg(long, requires = "bump")]
    pub dry_run: bool,

    /// Print the pin, or the bump's report, as JSON on stdout
    #[arg(long)]
    pub json: bool,
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

/// Check a published release as a whole, as a user can: assets, signatures, image,
/// CLI pins, formula, notes and floating tags agree.
///
/// Reads the assets from --dir (the archives, checksums.txt and its Sigstore bundle
/// checksums.txt.sigstore.json, as downloaded from the GitHub release, and
/// RELEASE_NOTES.md) or from --url, the image from the registry and the formula from the tap, and
/// checks that: every archive matches checksums.txt and checksums.txt's signature is
/// from the expected identity (this repository's release workflow, keyless; or --key);
/// REGISTRY/agent-runner:vX.Y.Z verifies as `verify-image` checks it, is signed by
/// that identity, and has an SBOM and a provenance (in the index, or as cosign
/// attestations); the `stigmer` binary in each archive pins that index digest (read
/// from the binary, which is not run); checksums.txt lists one archive per target; the
/// tap's formula names the newest published release, and when that is this one, the
/// same URLs and sha256s as checksums.txt for the tarballs; the notes name the same digest; and
/// `latest`, `vX.Y` and `vX` each name the newest release of their line that the
/// registry has published (none of them this release, if it is a pre-release). With
/// --rebuild it also builds the release again from its tag, the archives and the image's
/// platforms, and compares them with what was published. Prints one table (check,
/// subject, result), or --json, and exits non-zero naming each failed check. Writes
/// nothing.
#[derive(Args)]
pub struct VerifyRelease {
    /// The release to check, vX.Y.Z
    #[arg(value_name = "vX.Y.Z", required_unless_present = "plan")]
    pub version: Option<String>,

    /// The release plan (`cargo xtask plan --out`): version, repository and platforms
    /// come from it
    #[arg(long, value_name = "FILE", conflicts_with_all = ["version", "registry"])]
    pub plan: Option<PathBuf>,

    /// The directory holding the downloaded release assets
    #[arg(long, value_name = "DIR", default_value = "dist")]
    pub dir: PathBuf,

    /// Download the assets from this URL instead (the release's download URL,
    /// https://github.com/OWNER/NAME/releases/download/vX.Y.Z): checksums.txt, its
    /// bundle and every file it lists, into a temporary directory
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    pub url: Option<String>,

    /// The release notes [default: DIR/RELEASE_NOTES.md; with --url, none unless given]
    #[arg(long, value_name = "FILE")]
    pub notes: Option<PathBuf>,

    /// The registry and namespace the image is published to
    #[arg(long, value_name = "REGISTRY", default_value = "ghcr.io/stigmer")]
    pub registry: String,

    /// The Homebrew tap, a git URL or path (its default branch is cloned)
    #[arg(long, value_name = "GIT", default_value = "https://github.com/stigmer/homebrew-tap")]
    pub tap: String,

    /// The GitHub repository whose releases hold the assets (the formula's URLs) and
    /// whose release workflow signs
    #[arg(long, value_name = "OWNER/NAME", default_value = "stigmer/stigmer")]
    pub repo: String,

    /// Accept signatures by this cosign public key instead of a keyless identity (for
    /// releases signed with `--cosign-key`, which have no transparency-log entry)
    #[arg(long, value_name = "FILE", conflicts_with = "certificate_identity")]
    pub key: Option<PathBuf>,

    /// The keyless signer to accept [default:
    /// https://github.com/OWNER/NAME/.github/workflows/release.yml@refs/tags/vX.Y.Z]
    #[arg(long, value_name = "IDENTITY")]
    pub certificate_identity: Option<String>,

    /// The OIDC issuer of the keyless signer's certificate
    #[arg(long, value_name = "URL", default_value = "https://token.actions.githubusercontent.com")]
    pub certificate_oidc_issuer: String,

    /// Also build the release again from its tag and compare: clones the tag into a
    /// temporary directory, builds the archives there with `cargo xtask dist`, stamped
    /// with the verified image digest, and compares their bytes with checksums.txt (a
    /// minute or more per target; no binary built before is used; needs the toolchain of
    /// `cargo xtask dist`); and builds each platform image there with no cache and
    /// compares its manifest digest with the one the verified index lists for that
    /// platform (needs the builder the release used, read from its index: buildx, with
    /// the BuildKit release.yml pins, when the index holds BuildKit's attestations, else
    /// a Docker engine and CPython 3.11). A difference names the archive or the platform
    /// and what differs first
    #[arg(long)]
    pub rebuild: bool,

    /// With --rebuild: the git repository to clone the tag from [default:
    /// https://github.com/OWNER/NAME, from --repo]
    #[arg(long, value_name = "GIT", requires = "rebuild")]
    pub source: Option<String>,

    /// With --rebuild: rebuild this target's archive (repeatable). With --target or
    /// --platform, only what they name is rebuilt [default: every archive checksums.txt
    /// lists, and every platform]
    #[arg(long = "target", value_name = "TRIPLE", requires = "rebuild")]
    pub targets: Vec<crate::platform::Target>,

    /// With --rebuild: rebuild this platform's image, linux/amd64 or linux/arm64
    /// (repeatable). With --target or --platform, only what they name is rebuilt
    /// [default: every platform, and every archive]
    #[arg(long = "platform", value_name = "OS/ARCH", requires = "rebuild")]
    pub platforms: Vec<Platform>,

    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Run every test against real parts: the command CI runs.
///
/// Checks prerequisites, builds missing test base images, then runs rustfmt, clippy,
/// every workspace test and the agent-runner's pytest suite against a real Docker Engine
/// and real registries, and prints each suite's time and the ten slowest tests. When
/// something is missing on Debian as root, it first runs `bash ci/setup.sh` (which
/// installs and starts it all); elsewhere it names each missing part and how to get it.
#[derive(Args)]
pub struct Test {
    /// Only check prerequisites and build the test base images (Debian bookworm with
    /// python3, linux/amd64 and linux/arm64), then stop.
    #[arg(long, conflicts_with_all = ["quick", "partition"])]
    pub only_base_images: bool,

    /// Only what needs no engine, registry or cross-build, in a few minutes: rustfmt,
    /// clippy, pytest, every unit and snapshot test and the tidy, help and workflow
    /// tests (nextest's `quick` profile in .config/nextest.toml). Needs cargo-nextest.
    #[arg(long)]
    pub quick: bool,

    /// Run one shard of the Rust tests, as nextest's --partition takes it (hash:K/N):
    /// CI runs shards 1 to N on N machines. rustfmt, clippy, pytest and the bench run in
    /// shard 1 only. Needs cargo-nextest.
    #[arg(long, value_name = "hash:K/N")]
    pub partition: Option<String>,

    /// Never run ci/setup.sh: only name what is missing and how to get it.
    #[arg(long)]
    pub no_setup: bool,

    /// Arguments for the Rust test runner, e.g. a test name filter
    /// (`cargo xtask test -- registry`). With a filter, rustfmt, clippy and pytest are
    /// skipped.
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// Cross-build the `stigmer` CLI and package one reproducible archive per target.
///
/// Each archive is `stigmer-vX.Y.Z-<os>-<arch>.tar.gz` (for Windows a `.zip` holding
/// `stigmer.exe`) with one top folder holding the binary, README.md, LICENSE,
/// CHANGELOG.md, completions/ and man/; entries sorted, owned by 0:0, stamped with
/// SOURCE_DATE_EPOCH (else the commit time), so two runs give identical bytes.
/// This machine's target builds with cargo, the others with cargo-zigbuild. Writes the
/// archives, checksums.txt (`sha256sum -c` format) and manifest.json into a temporary
/// directory and moves them into --out only when every target built. Archives of other
/// targets already in --out are kept and listed, so one runner per target works.
#[derive(Args)]
pub struct Dist {
    /// A target triple to build (repeatable) [default: every supported target]
    #[arg(long = "target", value_name = "TRIPLE")]
    pub targets: Vec<crate::platform::Target>,

    /// Where the archives go
    #[arg(long, value_name = "DIR", default_value = "dist")]
    pub out: PathBuf,

    /// The version to stamp and name the archives with [default: the workspace version]
    #[arg(long, value_name = "X.Y.Z", conflicts_with = "plan")]
    pub version: Option<String>,

    /// The release plan (`cargo xtask plan --out`): the version comes from it
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// The agent-runner index digest (sha256:...) the CLI pins its image to
    #[arg(long, value_name = "DIGEST")]
    pub image_digest: Option<String>,
}

/// Write checksums.txt and manifest.json for the archives in a directory.
///
/// For a release whose targets were built on separate runners: gather the archives in
/// one directory, then run this. With --cosign-key or --keyless it also signs
/// checksums.txt into checksums.txt.sigstore.json (a Sigstore bundle, uploaded with the
/// release); new checksums remove a bundle that signed other ones.
#[derive(Args)]
pub struct Checksums {
    /// The directory holding the archives (stigmer-*.tar.gz, stigmer-*.zip)
    #[arg(value_name = "DIR", default_value = "dist")]
    pub dir: PathBuf,

    /// Sign checksums.txt with this cosign private key (password in COSIGN_PASSWORD),
    /// with no transparency log
    #[arg(long, value_name = "FILE", conflicts_with = "keyless")]
    pub cosign_key: Option<PathBuf>,

    /// Sign checksums.txt keyless (in GitHub Actions: the workflow's OIDC identity,
    /// which needs `id-token: write`)
    #[arg(long)]
    pub keyless: bool,
}

/// Write DIR/RELEASE_NOTES.md for a version.
///
/// The notes hold the CHANGELOG.md section of the version, the agent-runner image and
/// its digest, install instructions and a table of the artifacts in DIR/checksums.txt
/// with their sha256. A pre-release says so at the top.
#[derive(Args)]
#[command(group(ArgGroup::new("which").required(true).args(["version", "plan"])))]
pub struct ReleaseNotes {
    /// The version to write the notes of, vX.Y.Z
    #[arg(long, value_name = "vX.Y.Z")]
    pub version: Option<String>,

    /// The release plan (`cargo xtask plan --out`): version and registry come from it
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// The directory holding checksums.txt, and where the notes go
    #[arg(long, value_name = "DIR", default_value = "dist")]
    pub dir: PathBuf,

    /// The agent-runner index digest to name, once verified (sha256:...)
    #[arg(long, value_name = "DIGEST")]
    pub image_digest: Option<String>,

    /// The registry and namespace the image is published to
    #[arg(long, value_name = "REGISTRY", default_value = "ghcr.io/stigmer")]
    pub registry: String,
}

/// Render Formula/stigmer.rb into a Homebrew tap checkout.
///
/// The formula installs the GitHub release assets for macOS and Linux, arm and intel,
/// with their sha256 from checksums.txt, and refuses when a platform is missing. With
/// --commit it commits `stigmer X.Y.Z` when the formula changed (the same input makes no
/// new commit); with --push it also pushes the tap. The formula only moves forward: it
/// stays when a newer release is published (a backport) or the tap's formula is newer.
#[derive(Args)]
#[command(group(ArgGroup::new("which").required(true).args(["version", "plan"])))]
pub struct Homebrew {
    /// The version to render, vX.Y.Z
    #[arg(long, value_name = "vX.Y.Z")]
    pub version: Option<String>,

    /// The release plan (`cargo xtask plan --out`): the version, and whether the
    /// formula may move to it, come from it
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// Without --plan: the registry and namespace whose version tags say which releases
    /// are published
    #[arg(long, value_name = "REGISTRY", default_value = "ghcr.io/stigmer", conflicts_with = "plan")]
    pub registry: String,

    /// The checksums.txt of the release
    #[arg(long, value_name = "FILE", default_value = "dist/checksums.txt")]
    pub checksums: PathBuf,

    /// The tap checkout to write Formula/stigmer.rb into
    #[arg(long, value_name = "DIR")]
    pub tap: PathBuf,

    /// Commit the formula when it changed
    #[arg(long)]
    pub commit: bool,

    /// Commit and push the tap
    #[arg(long)]
    pub push: bool,

    /// Print the formula's diff against the tap's; write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// The GitHub repository whose releases hold the assets
    #[arg(long, value_name = "OWNER/NAME", default_value = "stigmer/stigmer")]
    pub repo: String,
}

/// Create or finish the GitHub release of a version with the `gh` CLI.
///
/// Creates the release as a draft (a pre-release for vX.Y.Z-rc.N) with DIR/RELEASE_NOTES.md,
/// uploads every archive and checksums.txt whose sha256 the release does not have yet,
/// then publishes it. A rerun after a failure finishes a half-done release. It becomes
/// GitHub's Latest only when no newer release is published, as GitHub lists its
/// releases at that moment (a rerun of an old tag never takes Latest back).
#[derive(Args)]
#[command(group(ArgGroup::new("which").required(true).args(["version", "plan"])))]
pub struct GithubRelease {
    /// The version whose tag the release is made from, vX.Y.Z
    #[arg(long, value_name = "vX.Y.Z")]
    pub version: Option<String>,

    /// The release plan (`cargo xtask plan --out`): the version, and whether the
    /// release becomes GitHub's Latest, come from it
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// Without --plan: the registry and namespace whose version tags say which releases
    /// are published
    #[arg(long, value_name = "REGISTRY", default_value = "ghcr.io/stigmer", conflicts_with = "plan")]
    pub registry: String,

    /// The directory holding the archives, checksums.txt and RELEASE_NOTES.md
    #[arg(long, value_name = "DIR", default_value = "dist")]
    pub dir: PathBuf,

    /// Print what would be created and uploaded; change nothing
    #[arg(long)]
    pub dry_run: bool,
}
