//! Test base images: Debian bookworm with python3, built from Debian packages because
//! no image can be pulled on our machines. They stand in for the Dockerfile's pinned python
//! base (same Python minor version) and carry the machine's CA bundle, so that `pip install`
//! inside a test build passes the intercepting proxy. The production Dockerfile never
//! sees any of this: tests pass the base as a build argument.
//!
//! One tag per platform, because the engine's image store keeps one platform per tag.
//! And the real agent-runner image built on the amd64 one (`agent_runner_image`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

/// The platforms tests build for; arm64 runs under qemu-user (binfmt).
pub const ARCHES: [&str; 2] = ["amd64", "arm64"];

/// Bump when the recipe below changes, so cached bases are rebuilt.
const RECIPE: &str = "1";
const RECIPE_LABEL: &str = "org.stigmer.test-base.recipe";

/// `stigmer-test-base:bookworm-<arch>`.
pub fn tag(arch: &str) -> String {
    format!("stigmer-test-base:bookworm-{arch}")
}

/// The base's tag for tests; panics with how to build it when it is missing.
pub fn require(arch: &str) -> String {
    crate::engine::require_engine();
    let sh = crate::shell();
    assert!(
        is_current(&sh, arch),
        "the test base image {} is missing or stale: run `cargo xtask test` (it builds the \
         test base images first) or `cargo xtask test --only-base-images`",
        tag(arch)
    );
    tag(arch)
}

/// Builds the base for `arch` unless a base of the current recipe is already there.
pub fn ensure(sh: &Shell, arch: &str) -> anyhow::Result<()> {
    if is_current(sh, arch) {
        return Ok(());
    }
    let tag = tag(arch);
    eprintln!(
        "building test base image {tag} (debootstrap; about 1 min for amd64, 3 min for arm64 under qemu)"
    );
    build(sh, arch, &tag).with_context(|| format!("building test base image {tag}"))
}

fn is_current(sh: &Shell, arch: &str) -> bool {
    let tag = tag(arch);
    let format = format!("{{{{index .Config.Labels \"{RECIPE_LABEL}\"}}}} {{{{.Architecture}}}}");
    cmd!(sh, "docker image inspect --format {format} {tag}")
        .quiet()
        .ignore_stderr()
        .read()
        .is_ok_and(|found| found.trim() == format!("{RECIPE} {arch}"))
}

fn build(sh: &Shell, arch: &str, tag: &str) -> anyhow::Result<()> {
    let mirror = debian_mirror()?;
    let work = tempfile::Builder::new().prefix("stigmer-base-").tempdir_in(scratch_dir())?;
    let rootfs = work.path().join("rootfs");
    let debootstrap = cmd!(
        sh,
        "debootstrap --variant=minbase --arch={arch} --include=python3,python3-venv,ca-certificates bookworm {rootfs} {mirror}"
    );
    let result = crate::run_captured(debootstrap, "debootstrap");
    // debootstrap mounts /proc and /sys inside the root filesystem; deleting it with
    // those still mounted would delete the host's entries. Unmount before anything else.
    if let Err(err) = unmount_below(sh, &rootfs) {
        let _ = work.keep();
        return Err(err.context(format!("left {} in place for inspection", rootfs.display())));
    }
    result?;

    // The intercepting proxy's CA is in the host bundle only.
    std::fs::copy("/etc/ssl/certs/ca-certificates.crt", rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .context("copying the host CA bundle into the root filesystem")?;
    for bulk in ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"] {
        let dir = rootfs.join(bulk);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
            std::fs::create_dir_all(&dir)?;
        }
    }

    let context = work.path().join("context");
    std::fs::create_dir(&context)?;
    let rootfs_tar = context.join("rootfs.tar");
    cmd!(sh, "tar --numeric-owner -C {rootfs} -cf {rootfs_tar} .")
        .quiet()
        .run()
        .context("packing the root filesystem")?;
    std::fs::write(context.join("Dockerfile"), dockerfile())?;
    let platform = format!("linux/{arch}");
    let recipe_label = format!("{RECIPE_LABEL}={RECIPE}");
    // `docker import --platform` is ignored by this engine (the config says amd64);
    // `FROM scratch` + ADD built with --platform records the right architecture, as long
    // as the cache is off: the legacy builder's cache ignores --platform.
    crate::run_captured(
        cmd!(
            sh,
            "docker build --no-cache --platform {platform} --label {recipe_label} --tag {tag} {context}"
        ),
        "docker build",
    )?;
    let built = crate::engine::image_architecture(tag)?;
    if built != arch {
        bail!("{tag} was built with --platform {platform} but its config says {built}");
    }
    Ok(())
}

fn dockerfile() -> &'static str {
    "FROM scratch\n\
     ADD rootfs.tar /\n\
     ENV LANG=C.UTF-8 \\\n    \
         SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\\n    \
         PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\\n    \
         REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt\n\
     CMD [\"python3\"]\n"
}

/// The Debian mirror this machine uses (the `URIs:` line of its apt sources): the
/// only one that is reachable, and never hard-coded.
fn debian_mirror() -> anyhow::Result<String> {
    let sources = "/etc/apt/sources.list.d/debian.sources";
    if let Ok(text) = std::fs::read_to_string(sources) {
        if let Some(uri) = text.lines().find_map(|l| l.strip_prefix("URIs:")).map(str::trim) {
            return Ok(uri.split_whitespace().next().unwrap_or(uri).to_owned());
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .filter_map(|l| l.strip_prefix("deb "))
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("http")))
        .map(str::to_owned)
        .with_context(|| format!("no Debian mirror found in {sources} or /etc/apt/sources.list"))
}

fn unmount_below(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    let mut below: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|point| Path::new(point).starts_with(root))
        .collect();
    // Deepest first.
    below.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in below {
        cmd!(sh, "umount --lazy {point}").quiet().run().with_context(|| format!("unmounting {point}"))?;
    }
    Ok(())
}

/// Root filesystems are a few hundred MB: keep them off a small /tmp when the target
/// dir has room, under the workspace's ignored `target/`.
fn scratch_dir() -> PathBuf {
    let dir = crate::target_dir().join("tmp");
    std::fs::create_dir_all(&dir).expect("creating target/tmp");
    dir
}

/// Pushes both test bases to `registry` as one multi-platform index, made with the
/// docker CLI's `manifest` command (not with our code), and returns its reference
/// (`test-base:bookworm`; each platform's image is tagged `bookworm-<arch>` too).
/// Builds that pull their base per platform (`--pull --platform`) use it.
///
/// The docker CLI pushes the bases once per set of base images (`pushed_once`); every
/// later push copies that push's manifests and compressed layers as they are (`skopeo
/// copy --preserve-digests`), so every registry gets the same index. `docker push`
/// gzips both bases' 340 MB again for each registry: 10-15 s of a core in dockerd,
/// which each of about thirty tests paid.
pub fn push_index(registry: &crate::registry::TestRegistry) -> String {
    let sh = crate::shell();
    let pushed = pushed_once(&sh);
    let repository = registry.repository("test-base");
    let creds: Vec<String> = registry
        .credentials()
        .map(|c| vec!["--dest-creds".to_owned(), format!("{}:{}", c.username, c.password)])
        .unwrap_or_default();
    // The platforms' images first: the index's copy then finds every blob there.
    for (name, tag) in copies("bookworm") {
        let (from, to, creds) = (pushed.join(name), format!("{repository}:{tag}"), &creds);
        cmd!(sh, "skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false {creds...} dir:{from} docker://{to}")
            .quiet()
            .ignore_stdout()
            .run()
            .expect("skopeo copy of the pushed test bases");
    }
    format!("{repository}:bookworm")
}

/// What `pushed_once` keeps, each in a directory of its own: (directory, tag) for
/// each platform's image and then the index tagged `index_tag`.
fn copies(index_tag: &str) -> Vec<(&'static str, String)> {
    let mut copies: Vec<(&'static str, String)> =
        ARCHES.iter().map(|arch| (*arch, format!("{index_tag}-{arch}"))).collect();
    copies.push(("index", index_tag.to_owned()));
    copies
}

/// The test bases as the docker CLI pushed them, in skopeo's `dir:` layout below
/// target/test-base-pushed/, named by the bases' image ids: pushed now (into a registry
/// of its own) when these bases never were. Under a lock, as tests run in parallel.
fn pushed_once(sh: &Shell) -> PathBuf {
    let ids: Vec<String> = ARCHES
        .iter()
        .map(|arch| {
            let local = require(arch);
            let format = "{{.Id}}";
            cmd!(sh, "docker image inspect --format {format} {local}").read().expect("docker image inspect")
        })
        .collect();
    let key: String =
        ids.iter().map(|id| id.trim_start_matches("sha256:")[..12].to_owned()).collect::<Vec<_>>().join("-");
    let root = crate::target_dir().join("test-base-pushed");
    std::fs::create_dir_all(&root).expect("creating target/test-base-pushed");
    let _lock = locked(&root.join(".lock"));
    let pushed = root.join(&key);
    if pushed.is_dir() {
        return pushed;
    }
    // Other bases' pushes are stale: one set of bases is current at a time.
    for entry in std::fs::read_dir(&root).expect("listing target/test-base-pushed").flatten() {
        if entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let registry = crate::registry::TestRegistry::start();
    let index = push_with_docker(sh, &registry);
    let partial = root.join(format!("{key}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).expect("creating the pushed test bases' directory");
    let repository = index.strip_suffix(":bookworm").expect("push_with_docker tags bookworm");
    for (name, tag) in copies("bookworm") {
        let (from, to) = (format!("{repository}:{tag}"), partial.join(name));
        cmd!(
            sh,
            "skopeo copy --quiet --all --preserve-digests --src-tls-verify=false docker://{from} dir:{to}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .expect("skopeo copy of the test bases into dir:");
    }
    std::fs::rename(&partial, &pushed).expect("keeping the pushed test bases");
    pushed
}

/// `push_index` with the docker CLI alone.
fn push_with_docker(sh: &Shell, registry: &crate::registry::TestRegistry) -> String {
    let config = registry.docker_config();
    let repository = registry.repository("test-base");
    let index = format!("{repository}:bookworm");
    let mut per_arch = Vec::new();
    for arch in ARCHES {
        let local = require(arch);
        let remote = format!("{repository}:bookworm-{arch}");
        cmd!(sh, "docker tag {local} {remote}").run().expect("docker tag");
        cmd!(sh, "docker --config {config} push --quiet {remote}")
            .quiet()
            .ignore_stdout()
            .run()
            .expect("docker push");
        cmd!(sh, "docker image rm --no-prune {remote}")
            .quiet()
            .ignore_stdout()
            .run()
            .expect("docker image rm");
        per_arch.push(remote);
    }
    cmd!(sh, "docker --config {config} manifest create --insecure {index} {per_arch...}")
        .quiet()
        .ignore_stdout()
        .run()
        .expect("docker manifest create");
    cmd!(sh, "docker --config {config} manifest push --insecure --purge {index}")
        .quiet()
        .ignore_stdout()
        .run()
        .expect("docker manifest push");
    index
}

/// The real agent-runner image, built from `agent-runner/` on the amd64 test base
/// with `version` baked in, tagged `stigmer-agent-runner-test:v<version>`. The tag is
/// shared by every test and never removed: its content is fixed by the sources, and
/// the engine's cache makes rebuilding it a no-op.
pub fn agent_runner_image(version: &str) -> String {
    // Labelled as `cargo xtask image --local` labels its builds (xtask's prepare.rs): the
    // CLI runs a `:local` image only with it.
    const LOCAL_BUILD_LABEL: &str = "dev.stigmer.local-build=cargo xtask image --local";
    let base = require("amd64");
    let sh = crate::shell();
    let tag = format!("stigmer-agent-runner-test:v{version}");
    let context = crate::project_root().join("agent-runner");
    let (base_arg, version_arg) = (format!("BASE_IMAGE={base}"), format!("VERSION={version}"));
    // The legacy builder sets no BUILDPLATFORM: run the Dockerfile's prepare stage here,
    // on amd64, as BuildKit would on an amd64 machine.
    let (prepare_arg, arch_arg) = ("PREPARE_PLATFORM=linux/amd64", "TARGETARCH=amd64");
    // One build at a time, as tests run in parallel: two legacy builds of these steps
    // at once can each make the version's image and move its tag from the other's.
    let _lock = locked(&crate::target_dir().join("agent-runner-test-image.lock"));
    let build = || {
        crate::run_captured(
            cmd!(sh, "docker build --platform linux/amd64 --build-arg {base_arg} --build-arg {version_arg} --build-arg {prepare_arg} --build-arg {arch_arg} --label {LOCAL_BUILD_LABEL} --tag {tag} {context}"),
            "building the agent-runner test image",
        )
    };
    // The legacy builder picks a cached step's image and then loads it; an image removed
    // in between (another test's `docker image rm`) fails the build with "unable to find
    // image sha256:...". Seen twice in the whole suite, cause not pinned down: built
    // again, the lookup no longer finds the removed image and makes the step anew.
    let lost_a_step = |built: &anyhow::Result<_>| {
        built.as_ref().is_err_and(|err| format!("{err:#}").contains("unable to find image"))
    };
    let mut built = build();
    for _ in 1..3 {
        if !lost_a_step(&built) {
            break;
        }
        built = build();
    }
    built.unwrap_or_else(|err| panic!("{err:#}"));
    tag
}

/// `path`, created if need be and locked for this process (tests run in parallel, each
/// in a process of its own) until the file is dropped.
fn locked(path: &Path) -> std::fs::File {
    let file = std::fs::File::create(path).unwrap_or_else(|err| panic!("creating {}: {err}", path.display()));
    file.lock().unwrap_or_else(|err| panic!("locking {}: {err}", path.display()));
    file
}
