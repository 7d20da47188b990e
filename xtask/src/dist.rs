//! `cargo xtask dist`: cross-build the `stigmer` CLI and package one reproducible archive
//! per target (a tarball, a zip for Windows), then write checksums.txt and manifest.json
//! (`checksums.rs`). Owns the build stamps and the archive layout (the targets are
//! `platform::Target`); it never publishes anything.
//!
//! The `dist` subsystem is what goes into or beside an archive: checksums.txt,
//! manifest.json and the installer `install.sh` (`checksums`), the completions and man
//! pages (`cli_docs`), and the reproducible Mach-O and PE rewrites (`macho`, `pe`).

pub(crate) mod checksums;
pub(crate) mod cli_docs;
pub(crate) mod macho;
pub(crate) mod pe;

use std::{
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::{files, flags, human::human_bytes, plan::ReleasePlan, platform::Target, project, version};

/// The stamp's format: the CLI's own file, so the two cannot disagree.
#[path = "../../cli/src/stamp.rs"]
pub(crate) mod cli_stamp;

/// What `dist` stamps into each binary after linking (see cli/src/stamp.rs).
pub(crate) struct Stamp {
    pub(crate) version: semver::Version,
    pub(crate) revision: String,
    pub(crate) date: chrono::DateTime<chrono::Utc>,
    pub(crate) image_digest: Option<String>,
}

impl Stamp {
    pub(crate) fn of_checkout(
        sh: &Shell,
        version: Option<semver::Version>,
        image_digest: Option<String>,
    ) -> anyhow::Result<Stamp> {
        if let Some(digest) = &image_digest {
            let hex = digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--image-digest {digest:?} is not a digest: expected sha256: and 64 hex digits");
            }
        }
        Ok(Stamp {
            version: match version {
                Some(version) => version,
                None => project::workspace_version(sh)?,
            },
            revision: project::git_revision(sh),
            date: project::source_date(sh)?,
            image_digest,
        })
    }

    /// The stamp as the binary holds it.
    fn as_written(&self) -> cli_stamp::Stamp {
        cli_stamp::Stamp {
            version: self.version.to_string(),
            revision: self.revision.clone(),
            date: self.date.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            image_digest: self.image_digest.clone(),
        }
    }
}

impl flags::Dist {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let targets = if self.targets.is_empty() { Target::ALL.to_vec() } else { self.targets };
        let (version, image_digest) = match (&self.plan, &self.version) {
            (Some(path), _) => {
                let plan = ReleasePlan::read(&sh.current_dir().join(path))?;
                let image_digest = plan.image_digest(self.image_digest)?;
                (Some(plan.version), image_digest)
            }
            (None, Some(text)) => (Some(version::parse(text)?), self.image_digest),
            (None, None) => (None, self.image_digest),
        };
        let stamp = Stamp::of_checkout(sh, version, image_digest)?;
        let made = dist(sh, &targets, &stamp, &self.out)?;
        print_summary(&made, &self.out);
        Ok(())
    }
}

/// One archive in the out directory.
pub(crate) struct Made {
    pub(crate) archive: String,
    pub(crate) archive_bytes: u64,
    pub(crate) binary_bytes: u64,
    pub(crate) seconds: f64,
}

/// Builds and packages `targets` into `out`, all or nothing. Archives of other targets
/// of this version already in `out` (from other runners) stay and are listed in the
/// checksums; another snapshot's are replaced; another release's are refused.
pub(crate) fn dist(sh: &Shell, targets: &[Target], stamp: &Stamp, out: &Path) -> anyhow::Result<Vec<Made>> {
    dist_with(sh, targets, stamp, out, Reuse::Kept)
}

/// Whether `dist` may take a CLI binary built before from the same inputs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// From dist/binaries/, when the inputs match (every build but a rebuild).
    Kept,
    /// Never: cargo compiles it (`verify-release --rebuild`, whose point is compiling).
    Never,
}

/// `dist`, choosing whether a kept binary may be used.
pub(crate) fn dist_with(
    sh: &Shell,
    targets: &[Target],
    stamp: &Stamp,
    out: &Path,
    reuse: Reuse,
) -> anyhow::Result<Vec<Made>> {
    let mut targets = targets.to_vec();
    targets.sort();
    targets.dedup();
    let out = sh.current_dir().join(out);
    // Everything that can be refused is refused before minutes of compiling.
    checksums::refuse_other_versions(&out, &stamp.version)?;
    for &target in &targets {
        check_toolchain(sh, target)?;
    }

    let staging = files::staging_dir_for(&out)?;
    if out.is_dir() {
        files::copy_dir_contents(&out, staging.path())?;
        checksums::discard_other_snapshots(staging.path(), &stamp.version)?;
    }

    // Read once for every target: the sources, the settings and the tools' versions.
    let inputs = BuildInputs::read(sh, targets.iter().any(|&target| Some(target) != Target::host()))?;
    let mut made = Vec::new();
    for &target in &targets {
        let started = Instant::now();
        let mut binary = build(sh, target, &inputs, reuse)?;
        let triple = target.triple();
        cli_stamp::write(&mut binary, &stamp.as_written())
            .map_err(|err| anyhow::anyhow!("stamping the CLI for {triple}: {err}"))?;
        // After the stamp: the UUID and the signature's page hashes cover it.
        if target.os() == "darwin" {
            macho::make_reproducible(&mut binary)
                .with_context(|| format!("rewriting the UUID of the CLI for {triple}"))?;
        }
        if !target.is_unix() {
            // A PE time cannot say a date past 2106, nor any before 1970.
            let seconds = u32::try_from(stamp.date.timestamp()).unwrap_or(0);
            pe::make_reproducible(&mut binary, seconds)
                .with_context(|| format!("setting the link time of the CLI for {triple}"))?;
        }
        let binary_bytes = binary.len() as u64;
        let archive = target.archive_name(&stamp.version);
        package(sh, target, &binary, stamp, &staging.path().join(&archive))
            .with_context(|| format!("packaging {archive}"))?;
        let archive_bytes = std::fs::metadata(staging.path().join(&archive))?.len();
        made.push(Made { archive, archive_bytes, binary_bytes, seconds: started.elapsed().as_secs_f64() });
    }
    checksums::write(staging.path())?;
    files::replace_dir(staging, &out)?;
    Ok(made)
}

/// Fails with what to install when `target` cannot be built here, before any build.
fn check_toolchain(sh: &Shell, target: Target) -> anyhow::Result<()> {
    let triple = target.triple();
    let installed = cmd!(sh, "rustup target list --installed").quiet().ignore_stderr().read();
    // Without rustup (a distribution's Rust) the build itself says what is missing.
    if let Ok(installed) = installed {
        if !installed.lines().any(|line| line.trim() == triple) {
            bail!(
                "the Rust standard library for {triple} is not installed: run `rustup toolchain install` \
                 in this checkout (rust-toolchain.toml names every target dist builds)"
            );
        }
    }
    if Some(target) != Target::host() && !has_zigbuild(sh) {
        bail!(
            "building {triple} on this machine needs a cross linker: install cargo-zigbuild and zig \
             (`bash ci/setup.sh`, or `pip install` the versions its pip_tools pins), or build this target on \
             a {}-{} machine",
            target.os(),
            target.arch()
        );
    }
    Ok(())
}

fn has_zigbuild(sh: &Shell) -> bool {
    cmd!(sh, "cargo zigbuild --help").quiet().ignore_stdout().ignore_stderr().run().is_ok()
}

/// Compiles the CLI for `target` in release mode, unstamped, and returns the binary.
/// Every version and digest shares this one build: the stamp is written into a copy
/// afterwards, so a new digest costs no compile. Builds go to dist/ below cargo's target
/// directory (`CARGO_TARGET_DIR` or target/), so their flags never evict the test build.
///
/// Each binary is kept in dist/binaries/, named by the hash of what went into it
/// (`BuildInputs`), and a build with the same inputs takes it from there without
/// running cargo. Cargo alone decides by file times, so another checkout of the same
/// sources (a release commit checked out again, every job of the rehearsal) relinked
/// the CLI with fat LTO for every target, and two checkouts building in turn each undid
/// the other's build.
///
/// The flags name no checkout: cargo hands rustc the workspace's sources by relative
/// path, and the paths that would differ between machines (the target directory, where
/// build scripts write, and `CARGO_HOME`) are remapped, so a rebuild elsewhere gives the
/// same bytes, and checkouts that share a target directory share its dependencies.
fn build(sh: &Shell, target: Target, inputs: &BuildInputs, reuse: Reuse) -> anyhow::Result<Vec<u8>> {
    let triple = target.triple();
    let target_dir = crate::project::target_dir(sh).join(dist_dir_name());
    std::fs::create_dir_all(&target_dir).with_context(|| format!("creating {}", target_dir.display()))?;
    // One spelling of the directory, whatever symlink led to it: the flags name it.
    let target_dir =
        target_dir.canonicalize().with_context(|| format!("resolving {}", target_dir.display()))?;
    let native = Some(target) == Target::host();
    let subcommand = if native { "build" } else { "zigbuild" };

    let cargo_home =
        std::env::var("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|_| home_dir().join(".cargo"));
    let mut rustflags = std::env::var("RUSTFLAGS").unwrap_or_default();
    for (from, to) in [(target_dir.as_path(), "/target"), (cargo_home.as_path(), "/cargo")] {
        rustflags.push_str(&format!(" --remap-path-prefix={}={to}", from.display()));
    }

    // Held from the build until the binary is read: another checkout's dist in this
    // directory would put its own binary at the same path in between.
    let lock = std::fs::File::create(target_dir.join("dist.lock"))?;
    lock.lock().with_context(|| format!("locking {}", target_dir.join("dist.lock").display()))?;
    let rustflags = rustflags.trim();
    let key = inputs.key(target, rustflags);
    let kept = target_dir.join("binaries").join(format!("stigmer-{triple}-{key}"));
    let kept_binary = match reuse {
        Reuse::Kept => std::fs::read(&kept).ok(),
        Reuse::Never => None,
    };
    if let Some(binary) = kept_binary {
        eprintln!("==> stigmer for {triple}: built before from the same inputs (kept as {key})");
        // Newest first for forget_old_binaries.
        let _ = File::options().write(true).open(&kept).and_then(|file| file.set_modified(SystemTime::now()));
        return Ok(binary);
    }
    eprintln!("==> building stigmer for {triple} (cargo {subcommand})");
    cmd!(sh, "cargo {subcommand} --locked --release --package stigmer --target {triple}")
        .env("CARGO_TARGET_DIR", &target_dir)
        // Build scripts write below the build directory, which the flags remap only
        // when it is this one (a caller's CARGO_BUILD_BUILD_DIR would move it).
        .env("CARGO_BUILD_BUILD_DIR", &target_dir)
        .env("RUSTFLAGS", rustflags)
        .run()
        .with_context(|| format!("building the CLI for {triple}"))?;
    let path = target_dir.join(triple).join("release").join(target.binary_name());
    let binary = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    std::fs::create_dir_all(kept.parent().unwrap())?;
    files::write_atomically(&kept, &binary)?;
    forget_old_binaries(kept.parent().unwrap(), triple)?;
    Ok(binary)
}

/// The directories below cargo's target directory that dist builds in: dist/ for the
/// release profile as it ships, dist-custom-profile/ when a `CARGO_PROFILE_RELEASE_*` variable
/// changes it (the tests' unoptimised CLI). Each has its own cargo lock and binaries, so
/// a build of one never waits on the other's or replaces its output.
pub(crate) const DIST_DIRS: [&str; 2] = ["dist", "dist-custom-profile"];

fn dist_dir_name() -> &'static str {
    DIST_DIRS[usize::from(profile_is_custom())]
}

/// Whether a `CARGO_PROFILE_RELEASE_*` variable changes the release profile, so that
/// what `dist` builds is not what ships (the tests' unoptimised CLI). Other profiles'
/// variables leave `dist`'s build as it ships.
pub(crate) fn profile_is_custom() -> bool {
    std::env::vars_os().any(|(name, _)| name.to_string_lossy().starts_with("CARGO_PROFILE_RELEASE_"))
}

/// What goes into a CLI build, as far as this can tell without cargo: more than it
/// needs rather than less, since a missed input would hand out a stale binary. The
/// target and RUSTFLAGS are added by `key`.
struct BuildInputs {
    /// Name and bytes of every file of the CLI's package, and of the workspace's files
    /// that set its dependencies, profile, toolchain and cargo's settings.
    files: Vec<(String, Vec<u8>)>,
    /// Every variable a compiler, linker or cargo reads.
    settings: Vec<String>,
    /// rustc's and cargo's versions.
    tools: Vec<String>,
    /// The cross linker's versions (cargo-zigbuild's and zig's), when a target needs it.
    cross_tools: Vec<String>,
}

/// Variables the build reads, by prefix. Cargo's own settings are `CARGO_*`, but for
/// those `cargo run` sets to describe the running package (xtask's, not the CLI's), and
/// for CARGO_TERM_*, which colors cargo's output and nothing else. Of `RUST*`, rustc's
/// and rustup's choice of toolchain: RUST_BACKTRACE or RUST_LOG change no output.
const BUILD_VARIABLES: &[&str] = &[
    "CARGO_",
    "RUSTC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUSTUP_TOOLCHAIN",
    "CC",
    "CFLAGS",
    "CXX",
    "AR",
    "LD",
    "ZIG",
    "SDKROOT",
    "MACOSX_",
    "SOURCE_DATE_EPOCH",
];
const NOT_BUILD_VARIABLES: &[&str] =
    &["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_", "CARGO_TERM_"];

impl BuildInputs {
    fn read(sh: &Shell, cross: bool) -> anyhow::Result<BuildInputs> {
        let root = sh.current_dir();
        let mut files = Vec::new();
        for name in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml", ".cargo/config.toml"] {
            if let Ok(bytes) = std::fs::read(root.join(name)) {
                files.push((name.to_owned(), bytes));
            }
        }
        add_files(&root, Path::new("cli"), &mut files)?;

        let mut variables: Vec<(String, String)> = std::env::vars()
            .filter(|(name, _)| BUILD_VARIABLES.iter().any(|prefix| name.starts_with(prefix)))
            .filter(|(name, _)| !NOT_BUILD_VARIABLES.iter().any(|prefix| name.starts_with(prefix)))
            // Set by this build, or by cargo for integration tests (a directory name).
            .filter(|(name, _)| {
                !["RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_BUILD_DIR", "CARGO_TARGET_TMPDIR"]
                    .contains(&name.as_str())
            })
            .collect();
        variables.sort();
        let settings = variables.into_iter().map(|(name, value)| format!("{name}={value}")).collect();

        let version = |cmd: xshell::Cmd<'_>, what: &str| {
            cmd.quiet().read().with_context(|| format!("asking {what} its version"))
        };
        let tools = vec![version(cmd!(sh, "rustc -vV"), "rustc")?, version(cmd!(sh, "cargo -V"), "cargo")?];
        let mut cross_tools = Vec::new();
        if cross {
            cross_tools.push(version(cmd!(sh, "cargo-zigbuild --version"), "cargo-zigbuild")?);
            // The linker itself: cargo-zigbuild runs the zig on PATH, or else ziglang's.
            let zig = cmd!(sh, "zig version").quiet().ignore_stderr().read();
            let zig = zig.or_else(|_| version(cmd!(sh, "python3 -m ziglang version"), "zig"))?;
            cross_tools.push(format!("zig {zig}"));
        }
        Ok(BuildInputs { files, settings, tools, cross_tools })
    }

    /// The name a build of `target` with `rustflags` is kept under.
    fn key(&self, target: Target, rustflags: &str) -> String {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        // Each part with its length first, so that no two lists hash alike.
        let mut part = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        for (name, bytes) in &self.files {
            part(name.as_bytes());
            part(bytes);
        }
        let cross = if Some(target) == Target::host() { &[][..] } else { &self.cross_tools[..] };
        let given = [format!("target={}", target.triple()), format!("RUSTFLAGS={rustflags}")];
        for text in given.iter().chain(&self.settings).chain(&self.tools).chain(cross) {
            part(text.as_bytes());
        }
        let digest = hash.finalize();
        digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect()
    }
}

/// Every file below `dir` (relative to `root`), in name order, with its bytes.
fn add_files(root: &Path, dir: &Path, files: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(dir))
        .with_context(|| format!("reading {}", root.join(dir).display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = dir.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            add_files(root, &path, files)?;
        } else {
            let bytes = std::fs::read(entry.path()).with_context(|| format!("reading {}", path.display()))?;
            files.push((path.to_string_lossy().into_owned(), bytes));
        }
    }
    Ok(())
}

/// Keeps the newest few binaries of `triple` in `dir`: a developer's every edit of
/// cli/ adds one.
fn forget_old_binaries(dir: &Path, triple: &str) -> anyhow::Result<()> {
    const KEPT: usize = 8;
    let prefix = format!("stigmer-{triple}-");
    let mut binaries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    binaries.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in binaries.into_iter().skip(KEPT) {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

/// The deflate level of every archive that ships. Level 9 made them 0.8 % smaller than
/// 6 and took 3.5 times as long (the linux-amd64 CLI, 7.8 MB unoptimised: 2.59 MB in
/// 1.2 s against 2.62 MB in 0.35 s); a warm `dist` of the five targets took 5.6 s
/// against 2.9 s. The level is part of what makes the bytes, so a rebuild compresses
/// with this one too.
const ARCHIVE_LEVEL: u32 = 6;

/// The level for a custom profile's build (`profile_is_custom`: the tests' unoptimised
/// CLI, which never ships), packed hundreds of times per run of the suite: at level 6
/// deflate was 11 % of the model test's CPU, more than any other function; level 1
/// packs it 2.5 times as fast, 13 % larger. A rebuild under the same profile compresses
/// alike.
const ARCHIVE_LEVEL_UNSHIPPED: u32 = 1;

fn archive_level() -> u32 {
    match profile_is_custom() {
        true => ARCHIVE_LEVEL_UNSHIPPED,
        false => ARCHIVE_LEVEL,
    }
}

/// Writes the archive: one top folder `stigmer-vX.Y.Z-<os>-<arch>/` with the binary,
/// README.md, LICENSE, CHANGELOG.md, `completions/` and `man/` (`cli_docs`).
/// Every byte is a function of the inputs: entries in name order, the source date as
/// every mtime, fixed modes; a tarball's owner 0:0 with no names and a gzip header
/// without time or file name, a zip's (`zip`) Unix modes and no extra fields.
fn package(sh: &Shell, target: Target, binary: &[u8], stamp: &Stamp, archive: &Path) -> anyhow::Result<()> {
    let name = archive.file_name().unwrap().to_str().unwrap();
    let top = name.strip_suffix(target.archive_extension()).unwrap_or(name).to_owned();
    let root = sh.current_dir();
    // A directory is an entry without bytes.
    let mut files: Vec<(String, Option<Vec<u8>>, u32)> =
        vec![("completions/".to_owned(), None, 0o755), (cli_docs::MAN_DIR.to_owned(), None, 0o755)];
    for name in ["CHANGELOG.md", "LICENSE", "README.md"] {
        let bytes = std::fs::read(root.join(name)).with_context(|| format!("reading {name}"))?;
        files.push((name.to_owned(), Some(bytes), 0o644));
    }
    for (name, bytes) in
        cli_docs::generate(&stamp.version).context("generating completions and the man pages")?
    {
        files.push((name, Some(bytes), 0o644));
    }
    files.push((target.binary_name().to_owned(), Some(binary.to_vec()), 0o755));
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let file = File::create(archive).with_context(|| format!("creating {}", archive.display()))?;
    if !target.is_unix() {
        return zip(file, &top, &files, stamp.date);
    }
    let gzip = flate2::GzBuilder::new().mtime(0).write(file, flate2::Compression::new(archive_level()));
    let mut tar = tar::Builder::new(gzip);
    let mtime = stamp.date.timestamp().max(0) as u64;

    let mut header = entry_header(mtime, 0o755, tar::EntryType::Directory, 0);
    tar.append_data(&mut header, format!("{top}/"), std::io::empty())?;
    for (name, bytes, mode) in files {
        match bytes {
            Some(bytes) => {
                let mut header = entry_header(mtime, mode, tar::EntryType::Regular, bytes.len() as u64);
                tar.append_data(&mut header, format!("{top}/{name}"), bytes.as_slice())?;
            }
            None => {
                let mut header = entry_header(mtime, mode, tar::EntryType::Directory, 0);
                tar.append_data(&mut header, format!("{top}/{name}"), std::io::empty())?;
            }
        }
    }
    let mut gzip = tar.into_inner()?;
    gzip.flush()?;
    gzip.finish()?.sync_all()?;
    Ok(())
}

/// The zip `package` writes for Windows: what Explorer and `Expand-Archive` open. The
/// date is the source date in UTC (a zip's time has no zone), at the format's 2 s.
fn zip(
    file: File,
    top: &str,
    files: &[(String, Option<Vec<u8>>, u32)],
    date: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    use chrono::{Datelike, Timelike};
    let time = zip::DateTime::from_date_and_time(
        u16::try_from(date.year()).unwrap_or(1980),
        date.month() as u8,
        date.day() as u8,
        date.hour() as u8,
        date.minute() as u8,
        date.second() as u8,
    )
    // Before 1980 or after 2107: the zip format cannot say it.
    .unwrap_or_default();
    let options = |mode: u32| {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(i64::from(archive_level())))
            .last_modified_time(time)
            .unix_permissions(mode)
    };
    let mut zip = zip::ZipWriter::new(file);
    zip.add_directory(format!("{top}/"), options(0o755))?;
    for (name, bytes, mode) in files {
        match bytes {
            Some(bytes) => {
                zip.start_file(format!("{top}/{name}"), options(*mode))?;
                zip.write_all(bytes)?;
            }
            None => zip.add_directory(format!("{top}/{name}"), options(*mode))?,
        }
    }
    zip.finish()?.sync_all()?;
    Ok(())
}

/// The `stigmer` binary inside an archive `dist` made, as its bytes.
pub(crate) fn read_binary(archive: &Path) -> anyhow::Result<Vec<u8>> {
    let entries = read_entries(archive)?;
    let binary = entries.into_iter().find(|(name, _)| {
        let file = name.rsplit('/').next();
        file == Some("stigmer") || file == Some("stigmer.exe")
    });
    binary.map(|(_, bytes)| bytes).with_context(|| format!("{} holds no stigmer binary", archive.display()))
}

/// Every entry of an archive (a .zip, else a .tar.gz), in order: its path and bytes.
pub(crate) fn read_entries(archive: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let file = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    if archive.extension().is_some_and(|extension| extension == "zip") {
        let mut zip = zip::ZipArchive::new(file).with_context(|| format!("reading {}", archive.display()))?;
        for index in 0..zip.len() {
            let mut entry = zip.by_index(index)?;
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            entries.push((entry.name()?.to_string(), bytes));
        }
    } else {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in tar.entries().with_context(|| format!("reading {}", archive.display()))? {
            let mut entry = entry?;
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            entries.push((entry.path()?.display().to_string(), bytes));
        }
    }
    Ok(entries)
}

fn entry_header(mtime: u64, mode: u32, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(size);
    header
}

fn print_summary(made: &[Made], out: &Path) {
    println!("\n{:<40} {:>10} {:>10} {:>8}", "archive", "archive", "binary", "time");
    for made in made {
        println!(
            "{:<40} {:>10} {:>10} {:>7.1}s",
            made.archive,
            human_bytes(made.archive_bytes),
            human_bytes(made.binary_bytes),
            made.seconds
        );
    }
    println!("\nwrote {} archive(s), checksums.txt and manifest.json to {}", made.len(), out.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of a build of this machine's target in a workspace made here.
    fn key_of(root: &Path, rustflags: &str) -> String {
        let sh = Shell::new().unwrap();
        sh.change_dir(root);
        let host = Target::host().expect("a target this machine builds");
        BuildInputs::read(&sh, false).unwrap().key(host, rustflags)
    }

    #[test]
    fn a_build_is_kept_by_its_inputs_and_not_by_where_or_when_they_were_checked_out() {
        let write = |root: &Path, path: &str, text: &str| {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), text).unwrap();
        };
        let checkout = |cli: &str| {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "Cargo.toml", "[workspace]\nmembers = [\"cli\"]\n");
            write(dir.path(), "Cargo.lock", "version = 4\n");
            write(dir.path(), "cli/src/main.rs", cli);
            dir
        };
        let first = checkout("fn main() {}\n");
        let second = checkout("fn main() {}\n");
        let key = key_of(first.path(), "");
        assert_eq!(key_of(second.path(), ""), key, "the same sources at another path");

        write(second.path(), "cli/src/main.rs", "fn main() { println!(); }\n");
        assert_ne!(key_of(second.path(), ""), key, "a changed source");
        write(second.path(), "cli/src/main.rs", "fn main() {}\n");
        write(second.path(), "cli/src/new.rs", "\n");
        assert_ne!(key_of(second.path(), ""), key, "a new file");
        std::fs::remove_file(second.path().join("cli/src/new.rs")).unwrap();
        write(second.path(), "Cargo.lock", "version = 4\n# another dependency\n");
        assert_ne!(key_of(second.path(), ""), key, "a changed lock file");
        write(second.path(), "Cargo.lock", "version = 4\n");
        assert_eq!(key_of(second.path(), ""), key);
        assert_ne!(key_of(second.path(), "-C opt-level=1"), key, "other RUSTFLAGS");
    }
}
