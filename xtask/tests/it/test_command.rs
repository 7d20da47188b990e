//! `cargo xtask test` itself: what it checks before running anything, who sets a
//! machine up, and which tests its quick tier runs.

use std::{collections::BTreeMap, path::Path};

use test_support::shell;
use xshell::{cmd, Cmd};

use crate::{needs_an_engine, nextest_list, run_err, XTASK};

/// `xtask test ARGS` with a PATH holding none of the tools and an engine address
/// where nothing listens. With an empty PATH nothing can start ci/setup.sh (no bash).
fn in_an_empty_machine<'a>(cmd: Cmd<'a>, empty: &Path) -> Cmd<'a> {
    cmd.env("PATH", empty)
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .env("STIGMER_BUILDX_DOCKER_HOST", "unix:///nonexistent.sock")
        .env("STIGMER_BUILDX_PLUGINS", empty)
}

#[test]
fn missing_prerequisites_are_all_named_with_their_fix() {
    let sh = shell();
    let empty = tempfile::tempdir().unwrap();
    let output = run_err(in_an_empty_machine(cmd!(sh, "{XTASK} test --no-setup"), empty.path()));
    assert!(
        !output.contains("built without the test environment"),
        "run the tests with `cargo xtask test`: it builds them with `--features xtask/test-env`, \
         which `xtask test` needs:\n{output}"
    );
    for expected in [
        "run `bash ci/setup.sh`",
        "`docker-registry` is not on PATH: apt-get install docker-registry",
        "`skopeo` is not on PATH: apt-get install skopeo",
        "`debootstrap` is not on PATH: apt-get install debootstrap",
        "the Docker Engine does not answer `docker info`",
        "the buildx engine does not answer `docker --host unix:///nonexistent.sock info`",
        "/docker-buildx is missing: run `bash ci/setup.sh`",
        "`strace` is not on PATH: apt-get install strace",
        "`man` is not on PATH: apt-get install man-db",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
    assert!(!output.contains("running `bash ci/setup.sh`"), "--no-setup ran the setup:\n{output}");
    // It stopped at the check: no suite ran.
    assert!(!output.contains("==> cargo"), "{output}");
}

/// The quick tier needs no engine: it neither asks for one nor builds the base images.
#[test]
fn the_quick_tier_checks_only_what_it_runs() {
    let sh = shell();
    let empty = tempfile::tempdir().unwrap();
    let output = run_err(in_an_empty_machine(cmd!(sh, "{XTASK} test --quick --no-setup"), empty.path()));
    for expected in [
        "`uv` is not on PATH",
        "`actionlint` is not on PATH",
        "`zizmor` is not on PATH",
        "`strace` is not on PATH",
        "`cargo nextest` is missing: cargo install cargo-nextest@0.9.143 --locked",
        "the Rust standard library for x86_64-pc-windows-gnu is missing (clippy checks the CLI for Windows)",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
    for engine_part in
        ["docker-registry", "Docker Engine", "buildx", "Podman", "qemu", "rustup targets", "Wine"]
    {
        assert!(!output.contains(engine_part), "--quick checked {engine_part:?}:\n{output}");
    }
    assert!(!output.contains("==> cargo"), "{output}");
}

/// On our machines (Debian, root) a missing part makes `xtask test` run ci/setup.sh;
/// anywhere else it only names what is missing. (Here the setup cannot start: the
/// empty PATH has no bash.)
#[test]
fn on_debian_as_root_a_missing_part_runs_the_setup_and_elsewhere_is_named() {
    let sh = shell();
    let empty = tempfile::tempdir().unwrap();
    let output = run_err(in_an_empty_machine(cmd!(sh, "{XTASK} test --quick"), empty.path()));
    let debian =
        std::fs::read_to_string("/etc/os-release").is_ok_and(|os| os.lines().any(|l| l == "ID=debian"));
    let root = cmd!(sh, "id -u").read().unwrap() == "0";
    if debian && root {
        assert!(output.contains("this is Debian and we are root, so running `bash ci/setup.sh`"), "{output}");
        assert!(output.contains("`uv` is not on PATH"), "it says what was missing first:\n{output}");
        assert!(output.contains("error: running ci/setup.sh"), "{output}");
    } else {
        assert!(!output.contains("running `bash ci/setup.sh`"), "{output}");
        assert!(output.contains("the test environment is not ready"), "{output}");
    }
}

/// The quick tier is nextest's `quick` profile (.config/nextest.toml, its one
/// definition): every unit test, and each integration-test module whole, exactly when
/// its code starts no engine, registry or cross-build.
#[test]
fn the_quick_profile_is_every_test_that_needs_no_engine_registry_or_cross_build() {
    let all = nextest_list(&["--profile", "default"]);
    let quick = nextest_list(&["--profile", "quick"]);
    assert!(
        all.len() > 150 && quick.len() > 80,
        "{} tests, {} quick: is the listing right?",
        all.len(),
        quick.len()
    );
    assert!(quick.iter().all(|test| all.contains(test)));

    let mut why_not_quick = BTreeMap::new();
    let mut wrong = Vec::new();
    for test in &all {
        let picked = quick.contains(test);
        let reason = if test.kind == "test" {
            let module = test.name.split("::").next().unwrap();
            let reason =
                why_not_quick.entry((test.package_dir.clone(), module.to_owned())).or_insert_with(|| {
                    let dir = test.package_dir.join("tests").join(test.binary.rsplit("::").next().unwrap());
                    let mut code = std::fs::read_to_string(dir.join(format!("{module}.rs"))).unwrap();
                    for file in std::fs::read_dir(dir.join(module)).into_iter().flatten() {
                        code.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
                    }
                    needs_an_engine(&code).map(str::to_owned)
                });
            reason.clone()
        } else {
            None // unit tests never start one
        };
        match (picked, reason) {
            (true, Some(line)) => {
                wrong.push(format!("{} {} is quick but needs an engine: {line}", test.binary, test.name))
            }
            (false, None) => {
                wrong.push(format!("{} {} needs no engine but is not quick", test.binary, test.name))
            }
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "fix the quick profile's default-filter in .config/nextest.toml:\n{}",
        wrong.join("\n")
    );
    // Both sides are there: the check can fail either way.
    assert!(why_not_quick.values().any(Option::is_some) && why_not_quick.values().any(Option::is_none));
}
