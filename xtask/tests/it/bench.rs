//! `cargo xtask bench --quick`: the bench runs end to end and writes its results. It
//! asserts on what was measured, never on how fast: timing targets are the bench's
//! business, not the test suite's.

use serde_json::Value;
use test_support::shell;
use xshell::cmd;

use crate::{run_ok, XTASK};

#[test]
fn the_quick_bench_measures_everything_and_writes_results() {
    let _builds = test_support::dist_builds_lock();
    let sh = shell();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path();
    // One sample on a machine running other tests: a missed target is no failure here.
    let table = run_ok(cmd!(sh, "{XTASK} bench --quick --no-fail --out {dir}"));
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let names: Vec<&str> =
        results["results"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for expected in [
        "warm rebuild, one-line app change",
        "bytes our layers add over the base",
        "`stigmer server start` to healthy",
        "agent-runner idle memory (RSS)",
        "re-push of an unchanged 2-platform image: blob bytes",
        // --quick sizes this machine's CLI only; the rehearsal builds all four.
        "CLI binary, linux-amd64",
        "arm64 / amd64 cold build, dependencies prepared on the build platform",
        "CLI tarball, linux-amd64",
        "`release --snapshot`, warm (this machine's target and image)",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let repush = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str().unwrap().starts_with("re-push"))
        .unwrap();
    assert_eq!(repush["median"], 0.0, "an unchanged re-push uploaded blobs");
    assert!(std::fs::read_to_string(dir.join("results.md")).unwrap().contains("| measurement | median |"));
    assert!(table.contains("old pipeline"), "{table}");
}
