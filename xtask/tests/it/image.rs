//! `cargo xtask image --local`: real builds through the engine from the test base
//! images, real containers, real HTTP against the service.

use std::{collections::BTreeMap, io::Read, path::Path, time::Duration};

use serde_json::Value;
use test_support::{
    base_image,
    engine::{image_architecture, wait_healthy, ContainerGuard, ImageGuard},
    project_root, shell, unique_name,
};
use xshell::cmd;

use crate::{run_err, run_ok, XTASK};

/// A copy of `agent-runner/` that a test may change without touching the tree other
/// tests build from.
pub(crate) fn agent_runner_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let sh = shell();
    let (from, to) = (project_root().join("agent-runner/."), copy.path());
    cmd!(sh, "cp -a {from} {to}").run().unwrap();
    copy
}

fn build(name: &str, arch: &str, context: &Path) -> String {
    build_with(name, arch, context, &[])
}

fn build_with(name: &str, arch: &str, context: &Path, flags: &[&str]) -> String {
    let sh = shell();
    let base = base_image::require(arch);
    let platform = format!("linux/{arch}");
    run_ok(cmd!(
        sh,
        "{XTASK} image --local --name {name} --platform {platform} --base-image {base} --context {context} {flags...}"
    ))
}

/// MarkupSafe 3.0.2, a real wheel with a compiled extension (`_speedups*.so`), pinned by
/// the hashes of its CPython 3.11 manylinux wheels for both machines: the dependency
/// tree then holds platform code that must match the image's platform.
const COMPILED_DEPENDENCY: &str = "markupsafe==3.0.2 \\
    --hash=sha256:2cb8438c3cbb25e220c2ab33bb226559e7afb3baec11c4f218ffa7308603c832 \\
    --hash=sha256:a123e330ef0853c6e822384873bef7507557d8e4a082961e1defa947aa59ba84
";

/// docopt 0.6.2 publishes a source distribution only: no wheel for any platform.
pub(crate) const SDIST_ONLY_DEPENDENCY: &str =
    "docopt==0.6.2 --hash=sha256:49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491\n";

/// A copy of `agent-runner/` whose lock file also pins `extra`.
pub(crate) fn agent_runner_with(extra: &str) -> tempfile::TempDir {
    let copy = agent_runner_copy();
    let lock = copy.path().join("requirements.lock");
    let mut text = std::fs::read_to_string(&lock).unwrap();
    text.push_str(extra);
    std::fs::write(&lock, text).unwrap();
    copy
}

/// Every regular file of an image's filesystem, read without running the image:
/// `docker create` (never started) and `docker export`.
fn image_files(image: &str) -> BTreeMap<String, Vec<u8>> {
    let sh = shell();
    let container = cmd!(sh, "docker create {image}").quiet().read().unwrap();
    let _guard = ContainerGuard { name: container.clone() };
    let export = tempfile::NamedTempFile::new().unwrap();
    let path = export.path();
    cmd!(sh, "docker export --output {path} {container}").quiet().run().unwrap();
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    files
}

/// Shared objects by file name: `x.so`, `x.cpython-311-aarch64-linux-gnu.so`, and
/// versioned ones like `libc.so.6` (but not `ld.so.cache`).
fn is_shared_object(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once(".so") {
        Some((_, "")) => true,
        Some((_, version)) => {
            version.starts_with('.')
                && version[1..].split('.').all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
        None => false,
    }
}

/// `e_machine` of an ELF file's header (offset 18, in the file's byte order), or None
/// when the bytes are not ELF.
fn elf_machine(bytes: &[u8]) -> Option<u16> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    let field = [bytes[18], bytes[19]];
    Some(if bytes[5] == 2 { u16::from_be_bytes(field) } else { u16::from_le_bytes(field) })
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

fn layers(reference: &str) -> Vec<String> {
    let sh = shell();
    let format = "{{json .RootFS.Layers}}";
    serde_json::from_str(&cmd!(sh, "docker image inspect --format {format} {reference}").read().unwrap())
        .unwrap()
}

/// Starts the image with `workspace` mounted, a fast health check, and a published port.
fn run_container(image: &str, workspace: &Path) -> (ContainerGuard, u16) {
    let sh = shell();
    let name = unique_name("agent-runner-it");
    let guard = ContainerGuard { name: name.clone() };
    let mount = format!("{}:/workspace", workspace.display());
    cmd!(sh, "docker run --detach --name {name} --health-interval 250ms --volume {mount} --publish 127.0.0.1::7235 {image}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    wait_healthy(&name, Duration::from_secs(60)).unwrap();
    let port = cmd!(sh, "docker port {name} 7235/tcp").read().unwrap();
    let port = port.lines().next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    (guard, port)
}

/// A workspace directory the container's non-root user (UID 1000) can write.
fn workspace_for_uid_1000() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(1000), Some(1000)).unwrap();
    dir
}

#[test]
fn the_image_runs_healthy_as_uid_1000_and_stores_uploads_in_the_workspace() {
    let name = unique_name("stigmer-agent-runner-it");
    let _images =
        ImageGuard::new([format!("{name}:local"), format!("{name}:v{}", env!("CARGO_PKG_VERSION"))]);
    let summary = build(&name, "amd64", &project_root().join("agent-runner"));
    assert!(summary.contains("layers") && summary.contains("from the base"), "{summary}");

    let workspace = workspace_for_uid_1000();
    let (container, port) = run_container(&format!("{name}:local"), workspace.path());
    let sh = shell();
    let id = &container.name;
    assert_eq!(cmd!(sh, "docker exec {id} id -u").read().unwrap(), "1000");
    // The application's byte code ships, compiled for the path it has in the image.
    let pyc = "/app/src/stigmer_agent_runner/__pycache__/app.cpython-311.pyc";
    cmd!(sh, "docker exec {id} test -f {pyc}").run().unwrap();

    let url = format!("http://127.0.0.1:{port}/version");
    let version: Value = serde_json::from_str(&cmd!(sh, "curl -sS {url}").read().unwrap()).unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    let head = cmd!(sh, "git rev-parse HEAD").read().unwrap();
    assert_eq!(version["revision"], head.as_str());

    let upload = tempfile::tempdir().unwrap();
    let notes = upload.path().join("notes.txt");
    std::fs::write(&notes, "hello agent\n").unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/runs");
    let request = r#"request={"agent":"echo","prompt":"hi"}"#;
    let file = format!("files=@{}", notes.display());
    let created = cmd!(sh, "curl -sS --fail-with-body -F {request} -F {file} {url}").read().unwrap();
    let created: Value = serde_json::from_str(&created).unwrap();
    let run_id = created["id"].as_str().unwrap();
    let stored = workspace.path().join(run_id).join("files/notes.txt");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "hello agent\n");

    // A traversal attempt is refused and writes nothing.
    let evil = format!("files=@{};filename=../escaped.txt", notes.display());
    let write_out = "%{http_code}";
    let refused = cmd!(sh, "curl -sS -o /dev/null -w {write_out} -F {request} -F {evil} {url}");
    let status = run_ok(refused);
    assert_eq!(status.trim(), "400");
    assert!(!workspace.path().join("escaped.txt").exists());
    let entries = std::fs::read_dir(workspace.path()).unwrap().count();
    assert_eq!(entries, 1, "only the first run's directory is in the workspace");
}

#[test]
fn an_app_only_change_rebuilds_only_the_app_layer() {
    let name = unique_name("stigmer-agent-runner-it");
    let _images =
        ImageGuard::new([format!("{name}:local"), format!("{name}:v{}", env!("CARGO_PKG_VERSION"))]);
    let context = agent_runner_copy();
    build(&name, "amd64", context.path());
    let before = layers(&format!("{name}:local"));

    let app = context.path().join("src/stigmer_agent_runner/__init__.py");
    let mut source = std::fs::read_to_string(&app).unwrap();
    source.push_str("\n# a one-line change\n");
    std::fs::write(&app, source).unwrap();
    let summary = build(&name, "amd64", context.path());
    let after = layers(&format!("{name}:local"));

    assert_eq!(before.len(), after.len());
    let changed: Vec<usize> = (0..before.len()).filter(|&i| before[i] != after[i]).collect();
    assert_eq!(changed, vec![before.len() - 1], "only the last (app) layer may change:\n{summary}");
    assert!(summary.contains("1 rebuilt"), "{summary}");
    // The unchanged lock file's dependencies come from target/, not from pip again.
    assert!(summary.contains("installed already for this requirements.lock"), "{summary}");
}

#[test]
fn an_arm64_image_holds_only_aarch64_code_and_becomes_healthy_under_qemu() {
    let name = unique_name("stigmer-agent-runner-it-arm64");
    let _images =
        ImageGuard::new([format!("{name}:local"), format!("{name}:v{}", env!("CARGO_PKG_VERSION"))]);
    let context = agent_runner_with(COMPILED_DEPENDENCY);
    let summary = build(&name, "arm64", context.path());
    assert!(summary.contains("preparing the dependencies on this machine"), "{summary}");
    assert_eq!(image_architecture(&format!("{name}:local")).unwrap(), "arm64");

    let files = image_files(&format!("{name}:local"));
    let shared: Vec<(&String, Option<u16>)> = files
        .iter()
        .filter(|(path, _)| is_shared_object(path))
        .map(|(path, bytes)| (path, elf_machine(bytes)))
        .collect();
    let foreign: Vec<_> = shared.iter().filter(|(_, machine)| *machine != Some(EM_AARCH64)).collect();
    assert!(foreign.is_empty(), "shared objects that are not aarch64 (ELF e_machine): {foreign:?}");
    let in_dependencies: Vec<&&String> = shared
        .iter()
        .map(|(path, _)| path)
        .filter(|path| path.starts_with("opt/stigmer/site-packages/"))
        .collect();
    assert!(
        in_dependencies.iter().any(|path| path.starts_with("opt/stigmer/site-packages/markupsafe/_speedups")),
        "the compiled dependency's extension is missing: {in_dependencies:?}"
    );

    let workspace = workspace_for_uid_1000();
    let (container, _port) = run_container(&format!("{name}:local"), workspace.path());
    let sh = shell();
    let id = &container.name;
    assert_eq!(cmd!(sh, "docker exec {id} uname -m").read().unwrap(), "aarch64");
    assert_eq!(cmd!(sh, "docker exec {id} id -un").read().unwrap(), "stigmer");
    let import = "import markupsafe._speedups";
    cmd!(sh, "docker exec {id} python3 -c {import}").run().unwrap();
}

#[test]
fn the_dependencies_are_the_same_files_whichever_path_installs_them() {
    let name = unique_name("stigmer-agent-runner-it-paths");
    let [on_host, emulated, in_stage] = ["host", "emulated", "stage"].map(|path| format!("{name}-{path}"));
    let version = env!("CARGO_PKG_VERSION");
    let _images = ImageGuard::new(
        [&on_host, &emulated, &in_stage]
            .iter()
            .flat_map(|n| [format!("{n}:local"), format!("{n}:v{version}")]),
    );
    let context = agent_runner_with(COMPILED_DEPENDENCY);
    build(&on_host, "amd64", context.path());
    let summary = build_with(&emulated, "amd64", context.path(), &["--allow-emulation"]);
    assert!(summary.contains("inside the linux/amd64 base image"), "{summary}");
    // The Dockerfile unchanged, its prepare stage run as BuildKit runs it on
    // $BUILDPLATFORM (this machine is amd64): the BuildKit path, on the legacy builder.
    let sh = shell();
    let base = format!("BASE_IMAGE={}", base_image::require("amd64"));
    let tag = format!("{in_stage}:local");
    let dir = context.path();
    cmd!(sh, "docker build --quiet --platform linux/amd64 --build-arg {base} --build-arg PREPARE_PLATFORM=linux/amd64 --build-arg TARGETARCH=amd64 --tag {tag} {dir}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();

    let dependencies = |image: &str| -> BTreeMap<String, Vec<u8>> {
        image_files(&format!("{image}:local"))
            .into_iter()
            .filter(|(path, _)| path.starts_with("opt/stigmer/site-packages/"))
            // RECORD lists the files with their hashes; INSTALLER names the pip. The
            // files themselves are compared below.
            .filter(|(path, _)| !path.ends_with(".dist-info/RECORD"))
            .collect()
    };
    let reference = dependencies(&on_host);
    assert!(reference.keys().any(|path| path.contains("_speedups")), "{:?}", reference.keys());
    let machines: Vec<Option<u16>> = reference
        .iter()
        .filter(|(path, _)| is_shared_object(path))
        .map(|(_, bytes)| elf_machine(bytes))
        .collect();
    assert!(machines.iter().all(|machine| *machine == Some(EM_X86_64)), "{machines:?}");
    // Byte code, compiled hash-based: the header (magic number, `unchecked-hash` flags,
    // the source's hash) is the same whoever compiled it. The code after it is the
    // compiling Python's: the host's for the host path, the base's in the image, and two
    // 3.11 patch releases may differ (seen: click's utils between 3.11.2 and 3.11.7).
    let compared = |path: &str, bytes: &[u8]| -> Vec<u8> {
        if path.ends_with(".pyc") {
            bytes[..16].to_vec()
        } else {
            bytes.to_vec()
        }
    };
    let pyc: Vec<&String> = reference.keys().filter(|path| path.ends_with(".cpython-311.pyc")).collect();
    assert!(pyc.len() > 10, "the dependencies have no byte code: {pyc:?}");
    for path in pyc {
        let flags = &reference[path][4..8];
        assert_eq!(flags, [1, 0, 0, 0], "{path} is not unchecked hash-based byte code");
    }
    for other in [&emulated, &in_stage] {
        let files = dependencies(other);
        let names = |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&files), names(&reference), "{other} installed other files than the host path");
        let differing: Vec<&String> = files
            .iter()
            .filter(|(path, bytes)| compared(path, &reference[*path]) != compared(path, bytes))
            .map(|(path, _)| path)
            .collect();
        assert!(differing.is_empty(), "{other} installed different contents: {differing:?}");
    }
}

/// Pure-Python dependencies make the same files for both platforms; the legacy
/// builder's cache, blind to --platform, then handed the amd64 `prepared` stage to the
/// arm64 build, whose runtime COPY --from refused it.
#[test]
fn an_arm64_build_after_an_amd64_build_of_the_same_files_does_not_reuse_its_prepared_stage() {
    let name = unique_name("stigmer-agent-runner-it-both");
    let _images =
        ImageGuard::new([format!("{name}:local"), format!("{name}:v{}", env!("CARGO_PKG_VERSION"))]);
    let context = agent_runner_copy();
    for arch in ["amd64", "arm64"] {
        build(&name, arch, context.path());
        assert_eq!(image_architecture(&format!("{name}:local")).unwrap(), arch);
        let platform = &image_files(&format!("{name}:local"))["opt/stigmer/platform"];
        assert_eq!(String::from_utf8_lossy(platform), format!("linux/{arch}\n"));
    }
}

/// Found when a snapshot and an `image --push` ran in one checkout: the legacy builder
/// sends its whole context, and the shared one held every running build's prepared
/// tree, so a build failed (`Can't add file .../.prepared/build-*/tree/...`) when the
/// other build removed its tree mid-send. Another build's files are planted in the
/// context here; the build must send none of them.
#[test]
fn a_build_sends_only_its_own_files_while_another_build_uses_the_context() {
    let name = unique_name("stigmer-agent-runner-it-alone");
    let _images =
        ImageGuard::new([format!("{name}:local"), format!("{name}:v{}", env!("CARGO_PKG_VERSION"))]);
    let context = agent_runner_copy();
    let other = context.path().join(".prepared/build-other/.prepared/tree/rootfs");
    std::fs::create_dir_all(&other).unwrap();
    // 64 MB of another build's dependencies: far more than this build's whole context.
    std::fs::write(other.join("site-packages.bin"), vec![7u8; 64 << 20]).unwrap();
    let output = build(&name, "amd64", context.path());
    let sent = output
        .lines()
        .find_map(|line| line.strip_prefix("Sending build context to Docker daemon"))
        .unwrap_or_else(|| panic!("no context size in the legacy builder's output:\n{output}"))
        .trim()
        .to_owned();
    assert!(sent.ends_with("MB") || sent.ends_with("kB"), "{sent}");
    let megabytes: f64 = sent.trim_end_matches("MB").trim_end_matches("kB").parse().unwrap();
    assert!(sent.ends_with("kB") || megabytes < 64.0, "another build's files were sent: {sent}");
    assert!(other.join("site-packages.bin").exists(), "the other build's files were touched");
}

#[test]
fn a_dependency_without_a_wheel_for_the_platform_is_named_and_nothing_is_built() {
    let name = unique_name("stigmer-agent-runner-it-nowheel");
    let _images =
        ImageGuard::new([format!("{name}:local"), format!("{name}:v{}", env!("CARGO_PKG_VERSION"))]);
    let context = agent_runner_with(SDIST_ONLY_DEPENDENCY);
    let sh = shell();
    let (base, dir) = (base_image::require("arm64"), context.path());
    let output = run_err(cmd!(
        sh,
        "{XTASK} image --local --name {name} --platform linux/arm64 --base-image {base} --context {dir}"
    ));
    assert!(output.contains("docopt==0.6.2 has no wheel for linux/arm64"), "{output}");
    assert!(output.contains("--allow-emulation"), "{output}");
    assert!(!output.contains("Step 1/"), "the engine started a build:\n{output}");
    assert!(image_architecture(&format!("{name}:local")).is_err(), "an image was tagged");
    assert!(!dir.join(".prepared").exists(), "the prepared files were left in the context");
}

#[test]
fn a_missing_dockerfile_is_named() {
    let sh = shell();
    let empty = tempfile::tempdir().unwrap();
    let context = empty.path();
    let output = run_err(cmd!(sh, "{XTASK} image --local --name never-built --context {context}"));
    assert!(output.contains("Dockerfile is missing"), "{output}");
}

#[test]
fn a_failing_build_step_shows_its_output() {
    let sh = shell();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo the-step-that-fails && false\n",
    )
    .unwrap();
    let (context, base) = (context.path(), base_image::require("amd64"));
    let output =
        run_err(cmd!(sh, "{XTASK} image --local --name never-built --base-image {base} --context {context}"));
    assert!(output.contains("the-step-that-fails"), "{output}");
    assert!(output.contains("error: building"), "{output}");
}

#[test]
fn an_unreachable_engine_says_how_to_start_one() {
    let sh = shell();
    let output = run_err(
        cmd!(sh, "{XTASK} image --local --name never-built").env("DOCKER_HOST", "unix:///nonexistent.sock"),
    );
    assert!(output.contains("Docker is not running"), "{output}");
    // What `docker info` itself said, not only our advice.
    assert!(
        output.contains("`docker info`: Cannot connect to the Docker daemon at unix:///nonexistent.sock"),
        "{output}"
    );
    assert!(output.contains("brew install --cask docker"), "{output}");
    assert!(output.contains("apt-get install docker.io"), "{output}");
}

/// Seen: a tool whose project root was deleted could not start `docker info` at all,
/// and once said the engine was down while it answered.
#[test]
fn an_engine_cli_that_cannot_start_is_not_called_a_stopped_engine() {
    let sh = shell();
    let gone = tempfile::tempdir().unwrap().path().join("deleted");
    // A base given: with the root gone there is no Dockerfile to read the pin from, and
    // the engine is what this test is about.
    let output = run_err(
        cmd!(sh, "{XTASK} image --local --name never-built --base-image never-pulled:1")
            .env("XTASK_PROJECT_ROOT", &gone),
    );
    assert!(output.contains("could not be run"), "{output}");
    assert!(
        output.contains(&format!(
            "`docker info`: could not be run: failed to get current directory `{}`",
            gone.display()
        )),
        "{output}"
    );
    assert!(!output.contains("Docker is not running"), "{output}");
}
