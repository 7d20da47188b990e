//! The gate of issue 27: anyone can rebuild a release from its commit and get the same
//! platform manifests. One commit is built twice with `image --push --no-cache`, in two
//! clones at different paths, the second at least a minute after the first began, in
//! another minute of the clock, with another umask and time zone, and with its files'
//! times set years back; both must push the same platform manifest digests, with the
//! engine builder and, separately, with buildx. Real engines, a real registry, a cold
//! pip install in each clone: nothing of the first build is reused by the second.

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use serde_json::Value;
use test_support::{base_image, buildx::BuildxEnv, engine::ImageGuard, registry::TestRegistry, shell};
use xshell::{cmd, Cmd, Shell};

use crate::{run_ok, sha256_hex, XTASK};

/// Runs `cmd`'s program and arguments with `umask`: a file mode creation mask can only be
/// set by the process that starts the program, here a shell with a constant script (the
/// arguments go through `"$@"`, never into the script).
fn under_umask<'a>(sh: &'a Shell, umask: &str, cmd: Cmd<'a>) -> Cmd<'a> {
    let script = "umask \"$0\" && exec \"$@\"";
    let command = std::process::Command::from(cmd);
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|arg| arg.to_owned()).collect();
    let mut wrapped = cmd!(sh, "sh -c {script} {umask} {program} {args...}");
    for (name, value) in command.get_envs() {
        wrapped = match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    wrapped
}

/// Sets the time of every file and directory below `dir` but `.git/` to `time`.
fn set_times(dir: &Path, time: SystemTime) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|name| name == ".git") {
            continue;
        }
        if path.is_dir() {
            set_times(&path, time);
        }
        if !path.is_symlink() {
            std::fs::File::open(&path).unwrap().set_modified(time).unwrap();
        }
    }
}

/// The platform entries (platform, manifest digest) of the index `reference` names, and
/// the index's digest.
fn published(registry: &TestRegistry, reference: &str) -> (Vec<(String, String)>, String) {
    let raw = manifest(registry, reference);
    let index: Value = serde_json::from_slice(&raw).unwrap();
    let platforms = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["annotations"]["vnd.docker.reference.type"].is_null())
        .map(|entry| {
            let platform = format!(
                "{}/{}",
                entry["platform"]["os"].as_str().unwrap(),
                entry["platform"]["architecture"].as_str().unwrap()
            );
            (platform, entry["digest"].as_str().unwrap().to_owned())
        })
        .collect();
    let digest = format!("sha256:{}", sha256_hex(&raw));
    (platforms, digest)
}

/// The raw bytes of a manifest, a config or a layer list, read with skopeo.
fn manifest(registry: &TestRegistry, reference: &str) -> Vec<u8> {
    let sh = shell();
    let creds = registry.skopeo_creds();
    let remote = format!("docker://{reference}");
    cmd!(sh, "skopeo inspect --raw --tls-verify=false {creds...} {remote}").quiet().output().unwrap().stdout
}

/// What differs between two platform manifests: the config (with the config's top-level
/// fields that differ) and each layer, so a failure names the part that is not
/// reproducible.
fn explain(registry: &TestRegistry, first: &str, second: &str) -> String {
    let read = |reference: &str| -> Value { serde_json::from_slice(&manifest(registry, reference)).unwrap() };
    let (one, two) = (read(first), read(second));
    let mut out = String::new();
    if one["config"]["digest"] != two["config"]["digest"] {
        let config = |reference: &str| -> Value {
            let sh = shell();
            let creds = registry.skopeo_creds();
            let remote = format!("docker://{reference}");
            let raw = cmd!(sh, "skopeo inspect --config --raw --tls-verify=false {creds...} {remote}");
            serde_json::from_str(&raw.quiet().read().unwrap()).unwrap()
        };
        let (a, b) = (config(first), config(second));
        out += "config differs:\n";
        let keys: std::collections::BTreeSet<&String> =
            a.as_object().unwrap().keys().chain(b.as_object().unwrap().keys()).collect();
        for key in keys {
            if a[key] != b[key] {
                out += &format!("  {key}:\n    {}\n    {}\n", a[key], b[key]);
            }
        }
    }
    let layers = |manifest: &Value| -> Vec<String> {
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    for (position, (a, b)) in layers(&one).iter().zip(layers(&two).iter()).enumerate() {
        if a != b {
            out += &format!("layer {} differs: {a} / {b}\n", position + 1);
        }
    }
    out
}

/// Builds the commit of `origin` twice as the module comment says, with `builder` and the
/// flags it needs, into `REGISTRY/first` and `REGISTRY/second`; returns both indexes'
/// platform entries and digests, after checking the platform manifests are the same.
fn build_twice(
    registry: &TestRegistry,
    base: &str,
    builder: &str,
    flags: &[&str],
    env: impl Fn(Cmd<'_>) -> Cmd<'_>,
) -> [(Vec<(String, String)>, String); 2] {
    let project = crate::release::copy_of_this_checkout();
    let origin = project.work();
    let commit = project.git(&["rev-parse", "HEAD"]);
    let sh = shell();
    let host = registry.host();

    let first = tempfile::tempdir().unwrap();
    let first_clone = first.path().join("stigmer");
    cmd!(sh, "git clone --quiet {origin} {first_clone}").run().unwrap();
    let started = Instant::now();
    let namespace = format!("{host}/first");
    run_ok(env(cmd!(
        sh,
        "{XTASK} image --push --no-cache --builder {builder} --registry {namespace} --version v1.0.0 --base-image {base} {flags...}"
    ))
    .env("XTASK_PROJECT_ROOT", &first_clone));
    let first_minute = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() / 60;

    // At least a minute after the first build began, and in another minute of the clock.
    let wait = Duration::from_secs(60).saturating_sub(started.elapsed());
    std::thread::sleep(wait);
    while SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() / 60 == first_minute {
        std::thread::sleep(Duration::from_millis(500));
    }
    let second = tempfile::tempdir().unwrap();
    let second_clone = second.path().join("another/deeper/path/stigmer-rebuild");
    run_ok(under_umask(&sh, "027", cmd!(sh, "git clone --quiet {origin} {second_clone}")));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(second_clone.join("agent-runner/Dockerfile")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o640, "the second clone was not made with umask 027");
    // Years before the commit: a time BuildKit's rewrite-timestamp would not clamp.
    set_times(&second_clone, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    let namespace = format!("{host}/second");
    let build = env(cmd!(
        sh,
        "{XTASK} image --push --no-cache --builder {builder} --registry {namespace} --version v1.0.0 --base-image {base} {flags...}"
    ))
    .env("XTASK_PROJECT_ROOT", &second_clone)
    .env("TZ", "Asia/Kathmandu");
    run_ok(under_umask(&sh, "027", build));

    let indexes = ["first", "second"]
        .map(|namespace| published(registry, &format!("{host}/{namespace}/agent-runner:v1.0.0")));
    let [(one, _), (two, _)] = &indexes;
    assert_eq!(one.len(), 2, "{one:?}");
    let explained: Vec<String> = one
        .iter()
        .zip(two)
        .filter(|((_, a), (_, b))| a != b)
        .map(|((platform, a), (_, b))| {
            format!(
                "{platform}: {a} / {b}\n{}",
                explain(
                    registry,
                    &format!("{host}/first/agent-runner@{a}"),
                    &format!("{host}/second/agent-runner@{b}")
                )
            )
        })
        .collect();
    assert!(
        explained.is_empty(),
        "two {builder} builds of {commit} gave different platform manifests:\n{}",
        explained.join("\n")
    );
    eprintln!("{builder}: {commit} built twice: {one:?}");
    indexes
}

/// The engine builder (Docker 20.10's legacy builder): the platform manifests, and the
/// index the builder assembles from them, are the same bytes.
#[test]
fn one_commit_built_twice_gives_the_same_platform_manifests_with_the_engine_builder() {
    let registry = TestRegistry::start();
    let base = base_image::push_index(&registry);
    let _base_tag = ImageGuard::new([base.clone()]);
    let [(_, first), (_, second)] = build_twice(&registry, &base, "engine", &[], |cmd| cmd);
    assert_eq!(first, second, "the platform manifests agree, but the assembled index differs");
}

/// buildx on dockerd 26 (BuildKit 0.13, `docker` driver, containerd image store). Only
/// the platform manifests: the index holds BuildKit's provenance, which records each
/// build (moby/buildkit#3421).
#[test]
fn one_commit_built_twice_gives_the_same_platform_manifests_with_buildx() {
    let registry = TestRegistry::start();
    let base = base_image::push_index(&registry);
    let buildx = BuildxEnv::new(&registry);
    let scanner = test_support::buildx::sbom_scanner(&buildx, &registry);
    build_twice(&registry, &base, "buildx", &["--sbom-generator", &scanner], |cmd| buildx.cmd(cmd));
}
