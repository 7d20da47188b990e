//! The platform-specific files of the agent-runner image, prepared on the build
//! platform so that no build step runs a target-platform binary: the locked
//! dependencies (pip picks the target's wheels by tag), `/etc/passwd` and `/etc/group`
//! with the `stigmer` user added to the base image's own files, `/workspace`, and the
//! application; the dependencies and the application with their byte code, compiled
//! by this machine's CPython 3.11, hash-based. Every file's mode and time is
//! normalised, as the `prepare` stage does: two builds of one commit copy the same
//! bytes, whatever the umask, the checkout's times or the clock.
//!
//! BuildKit does this in the Dockerfile's `prepare` stage on `$BUILDPLATFORM`. The
//! legacy builder builds every stage it meets, so for it this module does the same on
//! the host and hands the engine the Dockerfile from its `prepared` stage on
//! (`legacy_dockerfile`), which only copies. Each build gets a context of its own,
//! `.prepared/<build>/` below the agent-runner's: the legacy builder sends its whole
//! context, and a shared one held every concurrent build's prepared tree (a build
//! failed when another removed its tree while the context was being sent).
//!
//! It must not run anything from the target platform: the base image is read with
//! `docker create` + `docker cp`, never started.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::platform::Platform;

/// What an image build needs besides the Dockerfile's own defaults. Here, below
/// `engine.rs`, because preparing a build's files reads it too.
/// The label `cargo xtask image --local` puts on what it builds: the CLI runs a
/// `<name>:local` image only when it carries it (and never when its build pins a digest),
/// so a tag someone else made is never mistaken for a developer's build.
pub(crate) const LOCAL_BUILD_LABEL: &str = "dev.stigmer.local-build=cargo xtask image --local";

pub(crate) struct BuildRequest<'a> {
    pub(crate) context: &'a Path,
    pub(crate) platform: Platform,
    pub(crate) tags: &'a [String],
    /// `KEY=VALUE` labels set at build time, beside the Dockerfile's own.
    pub(crate) labels: &'a [String],
    pub(crate) build_args: &'a [(&'static str, String)],
    /// Pull the base for this platform first (`--pull`).
    pub(crate) pull: bool,
    /// Use no cached layer (`--no-cache`): a cold build.
    pub(crate) no_cache: bool,
}

/// Where the Dockerfile's `prepare` stage runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DependencyPath {
    /// On the build platform: pip installs the target's wheels, chosen by tag, without
    /// running the target's Python. A dependency with no such wheel stops the build.
    BuildPlatform,
    /// On the target platform, under qemu when it is foreign (`--allow-emulation`): pip
    /// runs in the target's Python and may build a dependency from its source.
    Emulated,
}

/// The stage the runtime copies from; the legacy Dockerfile starts here.
const PREPARED_STAGE: &str = "FROM scratch AS prepared";

/// The application's sources in the context, and where the image has them: the
/// `prepare` stage copies the one to the other (under `code/`) and compiles it.
const APP_SOURCES: &str = "src/stigmer_agent_runner";
const APP_IN_IMAGE: &str = "/app/src/stigmer_agent_runner";
/// Where the dependencies are in the image: their byte code records these paths.
const DEPENDENCIES_IN_IMAGE: &str = "/opt/stigmer/site-packages";

/// The pip options that select `platform`'s wheels from another machine: CPython 3.11
/// (the base image's), manylinux up to glibc 2.28 (pip also accepts the older
/// manylinux tags), wheels only. The Dockerfile's `prepare` stage spells the same.
pub(crate) fn wheel_selection(platform: Platform) -> Vec<String> {
    let machine = platform.machine();
    [
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        "3.11",
        "--platform",
        &format!("manylinux2014_{machine}"),
        "--platform",
        &format!("manylinux_2_28_{machine}"),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Whether the Dockerfile has the `prepared` stage this module knows how to fill.
pub(crate) fn has_prepared_stage(dockerfile: &str) -> bool {
    dockerfile.lines().any(|line| line.trim().eq_ignore_ascii_case(PREPARED_STAGE))
}

/// The Dockerfile for the legacy builder: the global ARGs, then a `prepared` stage
/// that copies `tree` (a directory inside the context) instead of the `prepare`
/// stage's output, then every stage after it. The stages before `prepared` are left
/// out, since the legacy builder would run their RUN steps even though nothing uses them.
pub(crate) fn legacy_dockerfile(dockerfile: &str, tree: &str) -> anyhow::Result<String> {
    let lines: Vec<&str> = dockerfile.lines().collect();
    let is_from =
        |line: &&str| line.trim_start().get(..5).is_some_and(|word| word.eq_ignore_ascii_case("FROM "));
    let first_from = lines.iter().position(is_from).context("the Dockerfile has no FROM")?;
    let prepared = lines
        .iter()
        .position(|line| line.trim().eq_ignore_ascii_case(PREPARED_STAGE))
        .with_context(|| format!("the Dockerfile has no `{PREPARED_STAGE}` stage"))?;
    let after_prepared = lines[prepared + 1..]
        .iter()
        .position(is_from)
        .map(|offset| prepared + 1 + offset)
        .context("the Dockerfile has no stage after `prepared`")?;
    // The comments just above the first FROM describe the stages left out.
    let mut preamble = &lines[..first_from];
    while let [rest @ .., last] = preamble {
        if !last.trim().is_empty() && !last.trim_start().starts_with('#') {
            break;
        }
        preamble = rest;
    }
    let mut out = preamble.join("\n");
    out += &format!(
        "\n\n# Generated by cargo xtask for the legacy builder: the stages before `prepared`\n\
         # are left out, and {tree}/ holds what they would have made, prepared on the host.\n\
         # The application apart and last: a change to it re-runs that one step.\n\
         {PREPARED_STAGE}\n\
         COPY {tree}/rootfs/ /rootfs/\n\
         COPY {tree}/owned/ /owned/\n\
         COPY {tree}/code/ /code/\n\n"
    );
    out += &lines[after_prepared..].join("\n");
    out.push('\n');
    Ok(out)
}

/// A build's own context for the legacy builder: its prepared files, the context files
/// the legacy Dockerfile copies, the context's `.dockerignore`, and the Dockerfile;
/// removed when dropped.
pub(crate) struct PreparedContext {
    dir: tempfile::TempDir,
}

impl PreparedContext {
    pub(crate) fn context(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn dockerfile(&self) -> PathBuf {
        self.dir.path().join("Dockerfile")
    }
}

impl Drop for PreparedContext {
    fn drop(&mut self) {
        // Best effort, and `.prepared/` itself only once no other build uses it.
        let _ = fs::remove_dir_all(self.dir.path());
        if let Some(parent) = self.dir.path().parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// Prepares on this machine what the Dockerfile's `prepare` stage would make for
/// `request.platform`, and the Dockerfile that copies it. `dockerfile` is the text of
/// the context's Dockerfile, which must have a `prepared` stage.
pub(crate) fn on_host(
    sh: &Shell,
    program: &str,
    request: &BuildRequest<'_>,
    dockerfile: &str,
) -> anyhow::Result<PreparedContext> {
    let platform = request.platform;
    let parent = request.context.join(".prepared");
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    // One directory per build: builds of several platforms or checkouts may run at once.
    let prepared = PreparedContext {
        dir: tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating a directory in {}", parent.display()))?,
    };
    let dir = prepared.dir.path();
    // Where the context's own `.dockerignore` lets prepared files in, so that copying
    // it verbatim keeps its other rules (no __pycache__) for this context too.
    let tree_in_context = ".prepared/tree";
    let tree = dir.join(tree_in_context);
    let site_packages = tree.join(format!("rootfs{DEPENDENCIES_IN_IMAGE}"));

    let python = host_python(sh)?;
    install_dependencies(sh, platform, &python, &request.context.join("requirements.lock"), &site_packages)?;
    let base =
        request.build_args.iter().find(|(name, _)| *name == "BASE_IMAGE").map(|(_, value)| value.as_str());
    let base = base.context("the build has no BASE_IMAGE build argument")?;
    write_accounts(sh, program, base, request, &tree.join("rootfs/etc"))?;
    // As in the Dockerfile: without it, the legacy builder's cache (blind to
    // --platform) could hand this `prepared` stage to another platform's build.
    fs::write(tree.join("rootfs/opt/stigmer/platform"), format!("{platform}\n"))?;
    // /app exists before WORKDIR names it, with the time set below: made by the engine,
    // it would carry the build's time.
    fs::create_dir_all(tree.join("rootfs/app"))?;
    let app = tree.join(format!("code{APP_IN_IMAGE}"));
    copy_tree(&request.context.join(APP_SOURCES), &app)
        .with_context(|| format!("copying {APP_SOURCES} into the build's context"))?;
    compile_bytecode(sh, &python, &app, APP_IN_IMAGE)?;
    let workspace = tree.join("owned/workspace");
    fs::create_dir_all(&workspace)?;
    // Every directory the runtime copies from, too: the legacy builder's history names
    // each COPY by a hash that covers the source directory's own mode.
    for part in ["rootfs", "owned", "code"] {
        normalize_modes(&tree.join(part))?;
    }
    fs::set_permissions(&workspace, std::os::unix::fs::PermissionsExt::from_mode(0o750))?;
    // Fixed times, as the `prepare` stage sets: the layers do not carry the checkout's
    // or the clock's, and the dependency layer stays the same while the lock does.
    set_times(&tree, SystemTime::UNIX_EPOCH + Duration::from_secs(ZIP_EPOCH))?;
    let legacy = legacy_dockerfile(dockerfile, tree_in_context)?;
    let sources = context_sources(&legacy)?.into_iter().filter(|source| !source.starts_with(tree_in_context));
    for source in sources.chain([".dockerignore".to_owned()]) {
        let from = request.context.join(&source);
        if from.exists() {
            copy_tree(&from, &dir.join(&source))
                .with_context(|| format!("copying {} into the build's context", from.display()))?;
        }
    }
    fs::write(dir.join("Dockerfile"), legacy)?;
    Ok(prepared)
}

/// What `dockerfile`'s COPY and ADD instructions take from the build context (those
/// without `--from`), as written: the files a build context must hold.
fn context_sources(dockerfile: &str) -> anyhow::Result<Vec<String>> {
    let mut sources = Vec::new();
    let joined = dockerfile.replace("\\\n", " ");
    for line in joined.lines() {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else { continue };
        if !["COPY", "ADD"].iter().any(|name| instruction.eq_ignore_ascii_case(name)) {
            continue;
        }
        let words: Vec<&str> = words.collect();
        if words.iter().any(|word| word.starts_with("--from")) {
            continue;
        }
        let operands: Vec<&str> = words.into_iter().filter(|word| !word.starts_with("--")).collect();
        match operands.as_slice() {
            [first, ..] if first.starts_with('[') => {
                bail!("`{line}`: the JSON form of {instruction} is not read here; write its sources plainly")
            }
            [sources_of_line @ .., _destination] if !sources_of_line.is_empty() => {
                sources.extend(sources_of_line.iter().map(|source| source.trim_end_matches('/').to_owned()))
            }
            _ => bail!("`{line}`: {instruction} needs a source and a destination"),
        }
    }
    Ok(sources)
}

/// Copies a file, or a directory with everything below it but what the agent-runner's
/// `.dockerignore` leaves out of every context (`__pycache__`, `*.pyc`, `*.pyo`,
/// `*.egg-info`): a developer's own byte code never reaches the image.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    if !from.is_dir() {
        fs::copy(from, to)?;
        return Ok(());
    }
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "__pycache__" || [".pyc", ".pyo", ".egg-info"].iter().any(|end| name.ends_with(end)) {
            continue;
        }
        copy_tree(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}

/// The CPython 3.11 of this machine, which compiles the image's byte code: a `.pyc` is
/// read only by the Python version that wrote it, and the image runs CPython 3.11 (the
/// wheel selection names it too). Its version is part of the dependency cache's key:
/// another patch release may compile other bytes.
struct HostPython {
    /// The interpreter itself (`sys.executable`), not a launcher in front of it (each of
    /// pyenv's shims costs a quarter of a second).
    executable: PathBuf,
    version: String,
}

fn host_python(sh: &Shell) -> anyhow::Result<HostPython> {
    let probe =
        "import platform, sys; print(sys.implementation.name, platform.python_version(), sys.executable)";
    for program in ["python3.11", "python3"] {
        let Ok(answer) = cmd!(sh, "{program} -c {probe}").quiet().ignore_stderr().read() else { continue };
        let mut words = answer.trim().splitn(3, ' ');
        if let (Some("cpython"), Some(version), Some(executable)) = (words.next(), words.next(), words.next())
        {
            if version.starts_with("3.11.") {
                return Ok(HostPython { executable: executable.into(), version: version.to_owned() });
            }
        }
    }
    bail!(
        "the image's byte code is compiled by this machine's CPython 3.11 (the image runs 3.11, and byte \
         code is read only by the version that wrote it), and neither `python3.11` nor `python3` is one: \
         install it (`apt-get install python3.11`, or `uv python install 3.11`), or build with buildx, \
         whose prepare stage uses the base image's Python"
    )
}

/// Compiles every module below `dir` to hash-based byte code, recording `in_image` as
/// its path, as the Dockerfile's `prepare` stage does: `unchecked-hash` writes no source
/// time (an image's files never change, so the check is not needed either), and a fixed
/// hash seed keeps the order of sets. The same sources give the same bytes wherever the
/// same Python compiles them.
fn compile_bytecode(sh: &Shell, python: &HostPython, dir: &Path, in_image: &str) -> anyhow::Result<()> {
    let program = &python.executable;
    let output =
        cmd!(sh, "{program} -m compileall -q --invalidation-mode unchecked-hash -d {in_image} {dir}")
            .env("PYTHONHASHSEED", "0")
            // Either would send the byte code elsewhere, or compile it optimised.
            .env_remove("PYTHONPYCACHEPREFIX")
            .env_remove("PYTHONOPTIMIZE")
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("running `{} -m compileall`", program.display()))?;
    if !output.status.success() {
        bail!(
            "compiling the byte code of {} with {} {} failed:\n{}{}",
            dir.display(),
            program.display(),
            python.version,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Modes as the `prepare` stage leaves them (`chmod -R u=rwX,go=rX`): directories and
/// executables 0755, other files 0644. pip and a checkout follow the umask, and the
/// image's user must read every file.
fn normalize_modes(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if metadata.is_symlink() {
        return Ok(());
    }
    let executable = metadata.is_dir() || metadata.permissions().mode() & 0o111 != 0;
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    if metadata.is_dir() {
        for entry in fs::read_dir(path)? {
            normalize_modes(&entry?.path())?;
        }
    }
    Ok(())
}

/// 1980-01-01, the earliest time a wheel (a zip file) can record.
const ZIP_EPOCH: u64 = 315_532_800;

/// Installs the locked dependencies for `platform` into `target`, from the prepared
/// copy in `target/prepared-dependencies/` when one was made from the same lock file and
/// wheel selection (pip fetches every wheel again otherwise: seconds on each warm
/// build). A copy is complete or absent: it is installed beside and renamed into place.
fn install_dependencies(
    sh: &Shell,
    platform: Platform,
    python: &HostPython,
    lock: &Path,
    target: &Path,
) -> anyhow::Result<()> {
    use sha2::Digest as _;
    if !lock.is_file() {
        bail!("{} is missing: the image's dependencies are installed from it", lock.display());
    }
    let wheels = wheel_selection(platform);
    let mut key = sha2::Sha256::new();
    key.update(fs::read(lock).with_context(|| format!("reading {}", lock.display()))?);
    key.update(wheels.join("\n"));
    key.update(format!("\nbyte code: unchecked-hash, CPython {}", python.version));
    let key = crate::registry::digest::hex(&key.finalize()[..16]);
    let cache = crate::project::target_dir(sh).join("prepared-dependencies");
    let prepared = cache.join(format!("{platform}-{key}").replace('/', "-"));
    if prepared.is_dir() {
        eprintln!(
            "==> {platform}: preparing the dependencies on this machine (installed already for this \
             requirements.lock: {})",
            prepared.display()
        );
    } else {
        eprintln!(
            "==> {platform}: preparing the dependencies on this machine (pip, {} wheels)",
            platform.machine()
        );
        fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
        let staging = tempfile::Builder::new().prefix(".staging-").tempdir_in(&cache)?;
        let installed = staging.path().join("site-packages");
        pip_install(sh, platform, lock, &wheels, &installed)?;
        // Console scripts name the preparing interpreter in their shebang; the service
        // runs as `python3 -m`, so they go, as in the Dockerfile.
        let scripts = installed.join("bin");
        if scripts.exists() {
            fs::remove_dir_all(&scripts)?;
        }
        compile_bytecode(sh, python, &installed, DEPENDENCIES_IN_IMAGE)?;
        // Another build may have made the same copy meanwhile: either is right.
        if let Err(err) = fs::rename(&installed, &prepared) {
            if !prepared.is_dir() {
                return Err(err)
                    .with_context(|| format!("moving the prepared dependencies to {}", prepared.display()));
            }
        }
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    // Hard links where the context and target/ share a file system; the build only reads them.
    cmd!(sh, "cp -al {prepared} {target}")
        .quiet()
        .ignore_stderr()
        .run()
        .or_else(|_| {
            let _ = fs::remove_dir_all(target);
            cmd!(sh, "cp -a {prepared} {target}").quiet().run()
        })
        .with_context(|| format!("copying the prepared dependencies from {}", prepared.display()))
}

fn pip_install(
    sh: &Shell,
    platform: Platform,
    lock: &Path,
    wheels: &[String],
    target: &Path,
) -> anyhow::Result<()> {
    let output = cmd!(
        sh,
        "python3 -m pip install --no-cache-dir --disable-pip-version-check --no-deps --require-hashes --no-compile --target {target} {wheels...} -r {lock}"
    )
    .quiet()
    .ignore_status()
    .output()
    .context("running `python3 -m pip` (install Python 3 with pip, e.g. `apt-get install python3-pip`)")?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(explain_pip_failure(&stderr, platform))
}

/// Names the dependency that has no wheel for the platform, when that is why pip
/// failed; otherwise pip's own last lines.
fn explain_pip_failure(stderr: &str, platform: Platform) -> anyhow::Error {
    if let Some(requirement) =
        stderr.lines().find_map(|line| line.trim().strip_prefix("ERROR: No matching distribution found for "))
    {
        return anyhow::anyhow!(
            "{requirement} has no wheel for {platform} (CPython 3.11, manylinux, {}), so its files \
             cannot be prepared without running {platform} code. Pin a version that publishes such a \
             wheel, or pass --allow-emulation to install it inside the {platform} base image, where \
             pip may build it from source (under qemu on this machine: several times slower)",
            platform.machine()
        );
    }
    if stderr.contains("No module named pip") {
        return anyhow::anyhow!(
            "preparing the dependencies for {platform} needs pip on this machine: install it \
             (`apt-get install python3-pip`), or pass --allow-emulation to install them inside the image"
        );
    }
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(15)..].join("\n");
    anyhow::anyhow!("pip could not prepare the dependencies for {platform}; its last lines:\n{tail}")
}

/// The base image's own `/etc/passwd` and `/etc/group`, read without running it, with
/// the `stigmer` user and group (1000) added.
fn write_accounts(
    sh: &Shell,
    program: &str,
    base: &str,
    request: &BuildRequest<'_>,
    etc: &Path,
) -> anyhow::Result<()> {
    let platform = request.platform.to_string();
    if request.pull {
        // Docker 20.10's image store gives a digest reference to one image: a base pinned
        // by its index digest (the Dockerfile's pin) that was pulled for another platform
        // refuses this pull ("Cannot overwrite digest"). That reference is dropped first;
        // the other platform's image goes with it unless a tag still names it.
        if base.contains('@') {
            let format = "{{.Architecture}}";
            let held =
                cmd!(sh, "{program} image inspect --format {format} {base}").quiet().ignore_stderr().read();
            if held.is_ok_and(|arch| arch.trim() != request.platform.arch()) {
                cmd!(sh, "{program} image rm {base}").quiet().ignore_stdout().run().with_context(|| {
                    format!("dropping {base} for another platform before pulling it for {platform}")
                })?;
            }
        }
        cmd!(sh, "{program} pull --quiet --platform {platform} {base}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("pulling {base} for {platform}"))?;
    }
    let created =
        cmd!(sh, "{program} create --platform {platform} {base}").quiet().read().with_context(|| {
            format!("reading the account files of {base}: creating a container (never started)")
        })?;
    let container = created.trim();
    fs::create_dir_all(etc)?;
    let copied = ["passwd", "group"].iter().try_for_each(|file| {
        let (from, to) = (format!("{container}:/etc/{file}"), etc.join(file));
        cmd!(sh, "{program} cp {from} {to}")
            .quiet()
            .run()
            .with_context(|| format!("copying /etc/{file} out of {base}"))
    });
    cmd!(sh, "{program} rm {container}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("removing the container made to read the base image")?;
    copied?;
    for (file, entry) in
        [("passwd", "stigmer:x:1000:1000::/nonexistent:/usr/sbin/nologin"), ("group", "stigmer:x:1000:")]
    {
        let path = etc.join(file);
        let mut text = fs::read_to_string(&path).with_context(|| format!("reading /etc/{file} of {base}"))?;
        if let Some(taken) = text.lines().find(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            fields.first() == Some(&"stigmer") || fields.get(2) == Some(&"1000")
        }) {
            bail!("/etc/{file} of {base} already has `{taken}`: the image's user is stigmer with ID 1000");
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text += entry;
        text.push('\n');
        fs::write(&path, text)?;
    }
    Ok(())
}

fn set_times(path: &Path, time: SystemTime) -> anyhow::Result<()> {
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            set_times(&entry?.path(), time)?;
        }
    }
    fs::File::open(path)
        .and_then(|file| file.set_modified(time))
        .with_context(|| format!("setting the time of {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dockerfile() -> String {
        std::fs::read_to_string(crate::project::root().join("agent-runner/Dockerfile")).unwrap()
    }

    #[test]
    fn the_legacy_dockerfile_of_the_agent_runner_only_copies() {
        let legacy = legacy_dockerfile(&dockerfile(), ".prepared/tree").unwrap();
        let instructions: Vec<&str> = legacy
            .lines()
            .filter(|line| !line.starts_with([' ', '#']) && !line.is_empty())
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert!(!instructions.contains(&"RUN"), "a RUN step would execute the target's binaries:\n{legacy}");
        insta::assert_snapshot!(legacy);
    }

    #[test]
    fn the_dockerfile_selects_the_wheels_the_host_path_selects() {
        // The `prepare` stage spells the options with ${machine}; the host path with the
        // machine name. Both must pick the same files.
        let dockerfile = dockerfile();
        let for_arm64 = wheel_selection(Platform::LinuxArm64).join(" ").replace("aarch64", "${machine}");
        assert!(
            dockerfile.contains(&format!("wheels=\"{for_arm64}\"")),
            "the Dockerfile's prepare stage does not use `{for_arm64}`"
        );
    }

    /// The host path makes what the `prepare` stage makes: the application from the same
    /// sources at the same place, and byte code compiled the same way, with the paths the
    /// image has.
    #[test]
    fn the_dockerfile_compiles_the_byte_code_the_host_path_compiles() {
        let dockerfile = dockerfile().replace("\\\n", " ");
        let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let dockerfile = words(&dockerfile);
        assert!(
            dockerfile.contains(&format!("COPY {APP_SOURCES} /out/code{APP_IN_IMAGE}")),
            "the prepare stage does not copy {APP_SOURCES} to /out/code{APP_IN_IMAGE}"
        );
        for (in_image, tree) in [
            (DEPENDENCIES_IN_IMAGE, format!("/out/rootfs{DEPENDENCIES_IN_IMAGE}")),
            (APP_IN_IMAGE, format!("/out/code{APP_IN_IMAGE}")),
        ] {
            let compile = format!(
                "PYTHONHASHSEED=0 python3 -m compileall -q --invalidation-mode unchecked-hash -d {in_image} {tree};"
            );
            assert!(dockerfile.contains(&compile), "the prepare stage does not run `{compile}`");
        }
        let normalized = "chmod -R u=rwX,go=rX";
        assert_eq!(dockerfile.matches(normalized).count(), 2, "rootfs and code are normalised");
        assert!(dockerfile.contains(&format!("--date=@{ZIP_EPOCH}")), "the times are not {ZIP_EPOCH}");
    }

    /// The build's own context holds these and nothing else of the agent-runner's.
    #[test]
    fn the_legacy_context_holds_what_the_legacy_dockerfile_copies() {
        let legacy = legacy_dockerfile(&dockerfile(), ".prepared/tree").unwrap();
        assert_eq!(
            context_sources(&legacy).unwrap(),
            [".prepared/tree/rootfs", ".prepared/tree/owned", ".prepared/tree/code"]
        );
        let continued = "FROM scratch\nCOPY --chown=1:1 \\\n  a.txt b/ \\\n  /dest/\nCOPY --from=x /y /z\n";
        assert_eq!(context_sources(continued).unwrap(), ["a.txt", "b"]);
        assert!(context_sources("COPY [\"a\", \"/b\"]\n").unwrap_err().to_string().contains("JSON form"));
    }

    #[test]
    fn a_dockerfile_without_a_prepared_stage_is_built_as_it_is() {
        assert!(has_prepared_stage(&dockerfile()));
        assert!(!has_prepared_stage("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY app.txt /app.txt\n"));
        assert!(legacy_dockerfile("FROM scratch\nCOPY a /a\n", "t").is_err());
    }

    #[test]
    fn a_missing_wheel_is_named_with_its_platform() {
        let stderr = "ERROR: Could not find a version that satisfies the requirement docopt==0.6.2 (from versions: none)\n\
                      ERROR: No matching distribution found for docopt==0.6.2\n";
        let message = explain_pip_failure(stderr, Platform::LinuxArm64).to_string();
        assert!(message.starts_with("docopt==0.6.2 has no wheel for linux/arm64"), "{message}");
        assert!(message.contains("--allow-emulation"), "{message}");
    }
}
