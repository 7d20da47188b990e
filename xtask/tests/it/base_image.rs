//! `cargo xtask base-image`: the base image is pinned by digest in one line of the
//! agent-runner's Dockerfile, a bump moves that line alone and says what changed, and a
//! release records the pin in its plan and in the image's labels. Against a real
//! registry standing in for Docker Hub, in copies of the project.

use std::path::Path;

use test_support::{base_image, engine::ImageGuard, registry::TestRegistry, shell};
use xshell::{cmd, Shell};

use crate::{run_err, run_ok, sha256_hex, XTASK};

const DOCKERFILE: &str = "agent-runner/Dockerfile";

/// A project holding this checkout's Dockerfile with its pin set to `pin`.
fn project_pinned(pin: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read_to_string(test_support::project_root().join(DOCKERFILE)).unwrap();
    let text: String = real
        .split_inclusive('\n')
        .map(|line| {
            if line.starts_with("ARG BASE_IMAGE=") {
                format!("ARG BASE_IMAGE={pin}\n")
            } else {
                line.to_owned()
            }
        })
        .collect();
    std::fs::create_dir_all(dir.path().join("agent-runner")).unwrap();
    std::fs::write(dir.path().join(DOCKERFILE), text).unwrap();
    dir
}

/// The index digest of `reference` in a plain-HTTP registry, hashed from its bytes.
fn index_digest(sh: &Shell, reference: &str) -> String {
    let raw =
        cmd!(sh, "skopeo inspect --raw --tls-verify=false docker://{reference}").output().unwrap().stdout;
    format!("sha256:{}", sha256_hex(&raw))
}

/// `REPO:tag` in the registry: an index of the test bases with `PYTHON_VERSION=python`
/// set, as python's images set it; each tag's images are built (an ENV step, no RUN)
/// and pushed per platform, then listed in one index.
fn push_python(sh: &Shell, registry: &TestRegistry, tag: &str, python: &str) -> String {
    let repository = registry.repository("library/python");
    let mut per_arch = Vec::new();
    let mut guard = ImageGuard::new(Vec::<String>::new());
    for arch in base_image::ARCHES {
        let base = base_image::require(arch);
        let image = format!("{repository}:{tag}-{arch}");
        guard.push(image.clone());
        let context = tempfile::tempdir().unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {base}\nENV PYTHON_VERSION={python}\n"),
        )
        .unwrap();
        let dir = context.path();
        cmd!(sh, "docker build --quiet --platform linux/{arch} -t {image} {dir}")
            .quiet()
            .ignore_stdout()
            .run()
            .unwrap();
        cmd!(sh, "docker push --quiet {image}").quiet().ignore_stdout().run().unwrap();
        per_arch.push(image);
    }
    let index = format!("{repository}:{tag}");
    cmd!(sh, "docker manifest create --insecure {index} {per_arch...}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    cmd!(sh, "docker manifest push --insecure --purge {index}").quiet().ignore_stdout().run().unwrap();
    index_digest(sh, &index)
}

fn dockerfile(project: &Path) -> String {
    std::fs::read_to_string(project.join(DOCKERFILE)).unwrap()
}

#[test]
fn a_bump_from_a_mirror_rewrites_the_one_line_and_says_what_changed_per_platform() {
    let sh = shell();
    let registry = TestRegistry::start();
    let old = push_python(&sh, &registry, "3.11-slim-before", "3.11.14");
    let new = push_python(&sh, &registry, "3.11-slim", "3.11.15");
    let project = project_pinned(&format!("python:3.11-slim@{old}"));
    let before = dockerfile(project.path());
    let mirror = registry.repository("library/python:3.11-slim");
    let bump = |flags: &[&str]| {
        cmd!(sh, "{XTASK} base-image --bump --from {mirror} {flags...}")
            .env("XTASK_PROJECT_ROOT", project.path())
    };

    // A dry run reports the change and writes nothing.
    let dry = run_ok(bump(&["--dry-run"]));
    assert!(dry.contains(&format!("python:3.11-slim: {old} -> {new}")), "{dry}");
    assert!(dry.contains("dry run: agent-runner/Dockerfile unchanged"), "{dry}");
    assert_eq!(dockerfile(project.path()), before, "a dry run wrote the Dockerfile");

    let bumped = run_ok(bump(&[]));
    assert!(bumped.contains(&format!("python:3.11-slim: {old} -> {new} (read from {mirror})")), "{bumped}");
    for platform in ["linux/amd64", "linux/arm64"] {
        let line = bumped
            .lines()
            .find(|line| line.trim_start().starts_with(platform))
            .unwrap_or_else(|| panic!("{bumped}"));
        assert!(line.contains(" -> sha256:"), "{bumped}");
    }
    assert_eq!(bumped.matches("Env PYTHON_VERSION 3.11.14 -> 3.11.15").count(), 2, "{bumped}");
    assert_eq!(bumped.matches("created ").count(), 2, "{bumped}");
    // Exactly the one line changed, to the name the Dockerfile uses (not the mirror's).
    let after = dockerfile(project.path());
    let changed: Vec<(&str, &str)> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(
        changed,
        [(
            format!("ARG BASE_IMAGE=python:3.11-slim@{old}").as_str(),
            format!("ARG BASE_IMAGE=python:3.11-slim@{new}").as_str()
        )]
    );
    assert_eq!(before.len(), after.len());

    // Again: the tag names the pin, and nothing changes.
    let again = run_ok(bump(&[]));
    assert!(again.contains(&format!("python:3.11-slim@{new} is current")), "{again}");
    assert!(again.contains("nothing written"), "{again}");
    assert_eq!(dockerfile(project.path()), after);
    let json = run_ok(bump(&["--json"]));
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (report["written"].as_bool(), report["report"]["change"].is_null()),
        (Some(false), true),
        "{json}"
    );
}

#[test]
fn a_pin_without_a_digest_is_refused_naming_the_bump() {
    let sh = shell();
    for pin in ["python:3.12-slim", "python@sha256:0123", "python:3.12-slim@sha256:abc"] {
        let project = project_pinned(pin);
        let refused = run_err(cmd!(sh, "{XTASK} base-image").env("XTASK_PROJECT_ROOT", project.path()));
        assert!(refused.contains("not as NAME:TAG@sha256:<64 hex>"), "{pin}: {refused}");
        assert!(refused.contains("run `cargo xtask base-image --bump`"), "{pin}: {refused}");
        // A build refuses it too, before it starts.
        let build = run_err(
            cmd!(sh, "{XTASK} image --local --name never-built").env("XTASK_PROJECT_ROOT", project.path()),
        );
        assert!(build.contains("run `cargo xtask base-image --bump`"), "{pin}: {build}");
    }
}

/// The release plan records the pin, the image job builds from the plan's base with no
/// --base-image, and the image's labels name it: `org.opencontainers.image.base.name`
/// and `.base.digest`.
#[test]
fn a_published_image_carries_the_base_the_plan_records() {
    let sh = shell();
    let registry = TestRegistry::start();
    let index = base_image::push_index(&registry);
    let digest = index_digest(&sh, &index);
    let pin = format!("{index}@{digest}");
    let _pulled = ImageGuard::new([pin.clone()]);
    let project = crate::release::copy_of_this_checkout();
    project.write(
        DOCKERFILE,
        &dockerfile(project.work()).replace(
            &format!("ARG BASE_IMAGE={}", run_ok(cmd!(sh, "{XTASK} base-image")).trim()),
            &format!("ARG BASE_IMAGE={pin}"),
        ),
    );
    project.commit_all("pin the test base");
    let root = project.work();
    let printed = run_ok(cmd!(sh, "{XTASK} base-image").env("XTASK_PROJECT_ROOT", root));
    assert_eq!(printed.trim(), pin);

    let host = registry.host();
    let plan = root.join("plan.json");
    let described = run_ok(
        cmd!(sh, "{XTASK} plan --version v1.0.0 --registry {host} --out {plan}")
            .env("XTASK_PROJECT_ROOT", root),
    );
    assert!(described.contains(&format!("built from {pin}")), "{described}");
    let recorded: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(recorded["image"]["base_image"], pin.as_str());

    let pushed = crate::run(
        cmd!(sh, "{XTASK} image --push --by-digest --platform linux/amd64 --builder engine --plan {plan}")
            .env("XTASK_PROJECT_ROOT", root),
    );
    let stderr = String::from_utf8_lossy(&pushed.stderr);
    assert!(pushed.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("base image   {pin}")), "{stderr}");
    let image = String::from_utf8(pushed.stdout).unwrap();
    let image = image.trim();
    let repository = registry.repository("agent-runner");
    let config =
        cmd!(sh, "skopeo inspect --config --tls-verify=false docker://{repository}@{image}").read().unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.base.name"], index.as_str(), "{labels:#}");
    assert_eq!(labels["org.opencontainers.image.base.digest"], digest.as_str(), "{labels:#}");
}
