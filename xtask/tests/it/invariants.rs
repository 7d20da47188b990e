//! The release's rules, attacked: sequences of releases, reruns, failures and third
//! parties that got around a rule once, each run against the real registry, git, the
//! tap and `verify-release`, with GitHub's releases stood in for by `gh_stand_in.py`
//! (GitHub's API cannot be reached from here).
//!
//! - I1, write-once: a published version tag never changes digest, and only a build
//!   of the release's own commit, verified and signed, is ever put under it.
//! - I2, forward-only: every floating pointer (image tags, the formula, GitHub's Latest)
//!   names the highest published release of its line, and pre-releases none.

mod model;

use std::path::Path;

use test_support::{github::GitHub, registry::TestRegistry, shell};
use xshell::cmd;

use crate::{
    publish::{published_digest, Fixture},
    release_artifacts::tarballs,
    run_err, run_ok, XTASK,
};

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

/// Found by reading `publish.rs`: anyone with write access to the package pushed a
/// multi-arch image (here the test base, two platforms like ours) under `v1.4.0` before
/// the tag's workflow ran; `image --push` verified it, reused it, signed it and moved
/// `latest` to it. Now it is refused, naming why, and nothing is tagged or moved.
#[test]
fn a_version_tag_pushed_by_a_third_party_is_refused_and_nothing_moves() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let released = published_digest(&run_ok(fixture.push(&sh, "v1.3.0")));
    let repository = fixture.repository();
    let foreign = test_support::base_image::push_index(&fixture.registry);
    let third_party = format!("docker://{repository}:v1.4.0");
    run_ok(cmd!(sh, "skopeo copy --quiet --all --src-tls-verify=false --dest-tls-verify=false docker://{foreign} {third_party}"));
    let writes = fixture.registry.writes();

    fixture.set_app("1.4.0");
    let refused = run_err(fixture.push(&sh, "v1.4.0"));
    assert!(refused.contains(&format!("{repository}:v1.4.0 names sha256:")), "{refused}");
    assert!(refused.contains("it is not this release's"), "{refused}");
    assert!(refused.contains("v1.4.1"), "{refused}");
    assert_eq!(fixture.registry.writes(), writes, "the refusal wrote to the registry");
    let latest = crate::publish::tag_digest(&fixture, "latest");
    assert_eq!(latest.as_deref(), Some(released.as_str()), "latest moved to the third party's image");
}

/// The order of a publish, read from the registry's own log: every manifest is pushed
/// by digest and read back by verification before `vX.Y.Z` is written, and the
/// floating tags come last. (Found by reading: the version tag was public before the
/// index was verified, and buildx wrote it itself.)
#[test]
fn the_version_tag_is_written_after_the_index_is_pushed_by_digest_and_verified() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let before = fixture.registry.requests().len();
    let digest = published_digest(&run_ok(fixture.push(&sh, "v2.0.0")));
    let requests = fixture.registry.requests()[before..].to_vec();
    let position = |method: &str, path_end: &str| {
        requests
            .iter()
            .position(|(m, path)| m == method && path.ends_with(path_end))
            .unwrap_or_else(|| panic!("no {method} ...{path_end} in {requests:#?}"))
    };
    let index_by_digest = position("PUT", &format!("/manifests/{digest}"));
    // Verification reads back every blob of every manifest the index names, hashing each.
    let blob_reads: Vec<usize> = (index_by_digest..requests.len())
        .filter(|&i| requests[i].0 == "GET" && requests[i].1.contains("/blobs/sha256:"))
        .collect();
    let version_tag = position("PUT", "/manifests/v2.0.0");
    let latest = position("PUT", "/manifests/latest");
    assert!(!blob_reads.is_empty(), "nothing was read back: {requests:#?}");
    assert!(
        blob_reads.iter().all(|&read| read < version_tag),
        "the tag came before verification: {requests:#?}"
    );
    assert!(index_by_digest < version_tag && version_tag < latest, "{requests:#?}");
    let tag_writes: Vec<&(String, String)> =
        requests.iter().filter(|(m, path)| m == "PUT" && path.contains("/manifests/v")).collect();
    assert_eq!(tag_writes.len(), 3, "v2.0.0, v2.0 and v2 once each: {tag_writes:?}");
}
