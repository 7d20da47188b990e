//! The release's rules, attacked: sequences of releases, reruns, failures and third
//! parties that got around a rule once, each run against the real registry, git, the
//! tap and `verify-release`, with GitHub's releases stood in for by `gh_stand_in.py`
//! (GitHub's API cannot be reached from here).
//!
//! - I2, forward-only: every floating pointer (image tags, the formula, GitHub's Latest)
//!   names the highest published release of its line, and pre-releases none.

use std::path::Path;

use test_support::{github::GitHub, registry::TestRegistry, shell};
use xshell::cmd;

use crate::{release_artifacts::tarballs, run_err, run_ok, XTASK};

/// The assets `github-release` publishes for `version`: real tarballs, checksums.txt, a
/// signature bundle (its content is cosign's business, checked by verify-release), notes.
fn release_assets(dir: &Path, version: &str) {
    let sh = shell();
    tarballs(dir, version);
    run_ok(cmd!(sh, "{XTASK} checksums {dir}"));
    std::fs::write(dir.join("checksums.txt.sigstore.json"), "{}").unwrap();
    std::fs::write(dir.join("RELEASE_NOTES.md"), format!("Stigmer {version}\n")).unwrap();
}

/// Found by reading `github_release.rs`: v1.3.0's release job fails at publish, v1.3.1
/// is released completely, then "Re-run failed jobs" on v1.3.0 (whose plan still says
/// Latest moves) made v1.3.0 GitHub's Latest again.
#[test]
fn a_rerun_of_an_old_release_never_takes_githubs_latest_back() {
    let registry = TestRegistry::start();
    let github = GitHub::new();
    let sh = shell();
    let host = registry.host();
    let temp = tempfile::tempdir().unwrap();
    let (plan_130, plan_131) = (temp.path().join("plan-1.3.0.json"), temp.path().join("plan-1.3.1.json"));
    let (dir_130, dir_131) = (temp.path().join("v1.3.0"), temp.path().join("v1.3.1"));
    release_assets(&dir_130, "1.3.0");
    release_assets(&dir_131, "1.3.1");
    fn gh<'a>(cmd: xshell::Cmd<'a>, github: &GitHub) -> xshell::Cmd<'a> {
        cmd.envs(github.env())
    }

    run_ok(cmd!(sh, "{XTASK} plan --registry {host} --version v1.3.0 --out {plan_130}"));
    github.fail_once("edit --draft=false");
    let failed = run_err(gh(cmd!(sh, "{XTASK} github-release --plan {plan_130} --dir {dir_130}"), &github));
    assert!(failed.contains("publishing the release"), "{failed}");
    assert_eq!(github.latest(), None);

    run_ok(cmd!(sh, "{XTASK} plan --registry {host} --version v1.3.1 --out {plan_131}"));
    run_ok(gh(cmd!(sh, "{XTASK} github-release --plan {plan_131} --dir {dir_131}"), &github));
    assert_eq!(github.latest().as_deref(), Some("v1.3.1"));

    // The rerun, with the plan of v1.3.0's first run.
    let rerun = run_ok(gh(cmd!(sh, "{XTASK} github-release --plan {plan_130} --dir {dir_130}"), &github));
    assert!(rerun.contains("v1.3.1 is newer on its line"), "{rerun}");
    let releases = github.releases();
    assert!(releases.iter().all(|r| !r.draft), "{releases:?}");
    assert_eq!(github.latest().as_deref(), Some("v1.3.1"), "{rerun}");
}
