//! `cargo xtask image --local`: real builds through the engine from the test base
//! images, real containers, real HTTP against the service.

use std::{path::Path, time::Duration};

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
fn agent_runner_copy() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let sh = shell();
    let (from, to) = (project_root().join("agent-runner/."), copy.path());
    cmd!(sh, "cp -a {from} {to}").run().unwrap();
    copy
}

fn build(name: &str, arch: &str, context: &Path) -> String {
    let sh = shell();
    let base = base_image::require(arch);
    let platform = format!("linux/{arch}");
    run_ok(cmd!(
        sh,
        "{XTASK} image --local --name {name} --platform {platform} --base-image {base} --context {context}"
    ))
}

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
}

#[test]
fn an_arm64_image_builds_and_runs_under_emulation() {
    let name = unique_name("stigmer-agent-runner-it-arm64");
    let _images =
        ImageGuard::new([format!("{name}:local"), format!("{name}:v{}", env!("CARGO_PKG_VERSION"))]);
    build(&name, "arm64", &project_root().join("agent-runner"));
    assert_eq!(image_architecture(&format!("{name}:local")).unwrap(), "arm64");
    let workspace = workspace_for_uid_1000();
    let (container, _port) = run_container(&format!("{name}:local"), workspace.path());
    let sh = shell();
    let id = &container.name;
    assert_eq!(cmd!(sh, "docker exec {id} uname -m").read().unwrap(), "aarch64");
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
    assert!(output.contains("brew install --cask docker"), "{output}");
    assert!(output.contains("apt-get install docker.io"), "{output}");
}
