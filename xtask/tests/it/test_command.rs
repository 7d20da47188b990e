use test_support::shell;
use xshell::cmd;

use crate::{run_err, XTASK};

#[test]
fn missing_prerequisites_are_all_named_with_their_fix() {
    let sh = shell();
    // A PATH with none of the tools and an engine address where nothing listens.
    let empty = tempfile::tempdir().unwrap();
    let output = run_err(
        cmd!(sh, "{XTASK} test")
            .env("PATH", empty.path())
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .env("STIGMER_BUILDX_DOCKER_HOST", "unix:///nonexistent.sock")
            .env("STIGMER_BUILDX_PLUGINS", empty.path()),
    );
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
    // It stopped at the check: no suite ran.
    assert!(!output.contains("==> cargo"), "{output}");
}
