//! What a release makes besides the tag: release notes from the rolled-over changelog,
//! the Homebrew formula committed to a real tap (with a bare `origin`) and checked by
//! `ruby -c`, and `release --snapshot` end to end with the real engine.

use std::path::Path;

use base64::Engine as _;

use test_support::{git::TestRepo, project_root, registry::TestRegistry, shell};
use xshell::cmd;

use crate::{run_err, run_ok, XTASK};

/// checksums.txt for v`version` naming `archives` (`ALL`'s, the platform with its
/// archive's extension).
fn checksums(dir: &Path, version: &str, archives: &[&str]) {
    let lines: String = archives
        .iter()
        .enumerate()
        .map(|(i, archive)| format!("{}  stigmer-v{version}-{archive}\n", format!("{i}").repeat(64)))
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("checksums.txt"), lines).unwrap();
}

/// Every archive `dist` makes, after the version, in name order.
const ALL: [&str; 5] = [
    "darwin-amd64.tar.gz",
    "darwin-arm64.tar.gz",
    "linux-amd64.tar.gz",
    "linux-arm64.tar.gz",
    "windows-amd64.zip",
];

#[test]
fn release_notes_come_from_the_released_changelog_section() {
    let repo = TestRepo::new();
    repo.write(
        "CHANGELOG.md",
        "# Changelog\n\n## [Unreleased]\n\n## [1.3.0] - 2026-11-23\n\n### Added\n\n- Logs by time.\n\n\
         ## [1.2.0] - 2026-10-01\n\n- Older.\n",
    );
    let dist = repo.work().join("dist");
    checksums(&dist, "1.3.0", &ALL);
    let sh = shell();
    let digest = format!("sha256:{}", "cd".repeat(32));
    let registry = TestRegistry::start();
    let host = registry.host();
    run_ok(
        cmd!(sh, "{XTASK} release-notes --version v1.3.0 --registry {host} --image-digest {digest}")
            .env("XTASK_PROJECT_ROOT", repo.work()),
    );
    let notes = std::fs::read_to_string(dist.join("RELEASE_NOTES.md")).unwrap();
    assert!(
        notes.starts_with("## Changes\n\n### Added\n\n- Logs by time.\n\n## Agent-runner image"),
        "{notes}"
    );
    assert!(!notes.contains("Older"), "{notes}");
    assert!(notes.contains(&format!("docker pull {host}/agent-runner@{digest}")), "{notes}");
    assert_eq!(notes.matches("| `stigmer-v1.3.0-").count(), 5, "{notes}");

    let unknown = run_err(
        cmd!(sh, "{XTASK} release-notes --version v9.0.0 --registry {host}")
            .env("XTASK_PROJECT_ROOT", repo.work()),
    );
    assert!(unknown.contains("CHANGELOG.md has no `## [9.0.0]` section"), "{unknown}");
}

/// Real archives (one small file each, a zip for Windows) named as `dist` names
/// v`version`'s.
pub(crate) fn tarballs(dir: &Path, version: &str) {
    let sh = shell();
    std::fs::create_dir_all(dir).unwrap();
    for name in ALL {
        let content = tempfile::tempdir().unwrap();
        std::fs::write(content.path().join("README.md"), format!("stigmer {version} {name}\n")).unwrap();
        let (archive, content) = (dir.join(format!("stigmer-v{version}-{name}")), content.path());
        if name.ends_with(".zip") {
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
            zip.start_file("README.md", zip::write::SimpleFileOptions::default()).unwrap();
            std::io::Write::write_all(&mut zip, &std::fs::read(content.join("README.md")).unwrap()).unwrap();
            zip.finish().unwrap();
        } else {
            cmd!(sh, "tar -czf {archive} -C {content} README.md").run().unwrap();
        }
    }
}

/// `checksums --cosign-key`: a standard Sigstore bundle beside checksums.txt that cosign
/// verifies and that a check by neither cosign nor its libraries accepts
/// (`sigstore_bundle::check`); new checksums remove the bundle of the old ones; a failed
/// signature leaves no bundle; and a real `github-release` refuses unsigned checksums
/// before asking GitHub.
#[test]
fn checksums_are_signed_into_a_bundle_that_cosign_verifies() {
    let keys = test_support::cosign::KeyPair::generate();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("dist");
    tarballs(&dir, "1.3.0");
    let sh = shell();
    let (key, public) = (&keys.key, &keys.public);
    let (sums, bundle) = (dir.join("checksums.txt"), dir.join("checksums.txt.sigstore.json"));
    let signed = run_ok(
        cmd!(sh, "{XTASK} checksums {dir} --cosign-key {key}")
            .env("COSIGN_PASSWORD", test_support::cosign::PASSWORD),
    );
    assert!(signed.contains("signed checksums.txt (cosign key"), "{signed}");
    // As a user checks it with a key: a trusted root that trusts nothing but the key.
    let root = temp.path().join("trusted_root.json");
    std::fs::write(&root, r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#)
        .unwrap();
    let verify_blob = || {
        crate::run(cmd!(
            sh,
            "cosign verify-blob --key {public} --insecure-ignore-tlog --new-bundle-format --trusted-root {root} --bundle {bundle} {sums}"
        ))
        .status
        .success()
    };
    assert!(verify_blob(), "cosign does not verify the bundle");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(json["mediaType"], "application/vnd.dev.sigstore.bundle.v0.3+json", "{json}");
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["mediaType", "messageSignature", "verificationMaterial"], "{json}");
    crate::sigstore_bundle::check(&bundle, &sums, public).unwrap();

    // The second check fails where it should: one signature byte flipped, and cosign's
    // legacy bundle (what `sign-blob --bundle` writes without --new-bundle-format).
    let signed = std::fs::read_to_string(&bundle).unwrap();
    let mut flipped = json.clone();
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut signature = base64.decode(json["messageSignature"]["signature"].as_str().unwrap()).unwrap();
    *signature.last_mut().unwrap() ^= 1;
    flipped["messageSignature"]["signature"] = base64.encode(&signature).into();
    std::fs::write(&bundle, flipped.to_string()).unwrap();
    let refused = crate::sigstore_bundle::check(&bundle, &sums, public).unwrap_err();
    assert!(refused.starts_with("openssl does not verify the signature"), "{refused}");
    assert!(!verify_blob(), "cosign verified a flipped signature");
    run_ok(
        cmd!(sh, "cosign sign-blob --yes --key {key} --tlog-upload=false --bundle {bundle} {sums}")
            .env("COSIGN_PASSWORD", test_support::cosign::PASSWORD),
    );
    let refused = crate::sigstore_bundle::check(&bundle, &sums, public).unwrap_err();
    assert!(refused.contains("'base64Signature' was unexpected"), "{refused}");
    std::fs::write(&bundle, signed).unwrap();

    // Other archives, new checksums: the old signature goes.
    std::fs::write(dir.join("stigmer-v1.3.0-linux-amd64.tar.gz"), "rebuilt").unwrap();
    run_ok(cmd!(sh, "{XTASK} checksums {dir}"));
    assert!(!bundle.exists(), "a bundle of other checksums stayed beside checksums.txt");

    let failed =
        run_err(cmd!(sh, "{XTASK} checksums {dir} --cosign-key {key}").env("COSIGN_PASSWORD", "wrong"));
    assert!(failed.contains("signing") && failed.contains("COSIGN_PASSWORD"), "{failed}");
    let left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!left.iter().any(|name| name.contains("sigstore")), "{left:?}");

    std::fs::write(dir.join("RELEASE_NOTES.md"), "notes\n").unwrap();
    let registry = TestRegistry::start();
    let host = registry.host();
    let refused = run_err(cmd!(sh, "{XTASK} github-release --version v1.3.0 --registry {host} --dir {dir}"));
    assert!(
        refused.contains("has no checksums.txt.sigstore.json: a release publishes signed checksums"),
        "{refused}"
    );
}

/// A tap checkout whose `origin` is a bare repository, with one commit pushed.
pub(crate) fn tap() -> TestRepo {
    let tap = TestRepo::new();
    tap.write("README.md", "# stigmer/homebrew-tap\n");
    tap.commit_all("start");
    tap.git(&["push", "--quiet", "origin", "main"]);
    tap
}

#[test]
fn the_formula_is_committed_and_pushed_once_and_only_when_it_changes() {
    let tap = tap();
    let temp = tempfile::tempdir().unwrap();
    checksums(temp.path(), "1.3.0", &ALL);
    let sums = temp.path().join("checksums.txt");
    let tap_dir = tap.work();
    let sh = shell();
    let registry = TestRegistry::start();
    let host = registry.host();
    let homebrew = || {
        cmd!(
            sh,
            "{XTASK} homebrew --version v1.3.0 --registry {host} --checksums {sums} --tap {tap_dir} --push"
        )
    };

    run_ok(homebrew());
    let formula = tap_dir.join("Formula/stigmer.rb");
    run_ok(cmd!(sh, "ruby -c {formula}"));
    assert_eq!(tap.git(&["log", "-1", "--format=%s"]), "stigmer 1.3.0");
    let remote_head = |tap: &TestRepo| tap.git(&["ls-remote", "origin", "refs/heads/main"]);
    assert!(remote_head(&tap).starts_with(&tap.git(&["rev-parse", "HEAD"])), "the tap was not pushed");

    // The same input again: no new commit.
    let head = tap.git(&["rev-parse", "HEAD"]);
    let again = run_ok(homebrew());
    assert!(again.contains("the formula is unchanged: no commit"), "{again}");
    assert_eq!(tap.git(&["rev-parse", "HEAD"]), head);
    assert_eq!(tap.git(&["status", "--porcelain"]), "");
}

#[test]
fn the_formula_refuses_missing_platforms_and_pre_releases_leaving_the_tap_alone() {
    let tap = tap();
    let temp = tempfile::tempdir().unwrap();
    let sh = shell();
    let tap_dir = tap.work();
    let sums = temp.path().join("checksums.txt");
    let registry = TestRegistry::start();
    let host = registry.host();

    checksums(temp.path(), "1.3.0", &ALL[..3]);
    let missing = run_err(cmd!(
        sh,
        "{XTASK} homebrew --version v1.3.0 --registry {host} --checksums {sums} --tap {tap_dir} --commit"
    ));
    assert!(missing.contains("the checksums lack stigmer-v1.3.0-linux-arm64.tar.gz"), "{missing}");

    checksums(temp.path(), "1.3.0-rc.1", &ALL);
    let pre = run_err(cmd!(
        sh,
        "{XTASK} homebrew --version v1.3.0-rc.1 --registry {host} --checksums {sums} --tap {tap_dir} --push"
    ));
    assert!(pre.contains("Homebrew gets stable releases only"), "{pre}");

    assert!(!tap_dir.join("Formula").exists());
    assert_eq!(tap.git(&["log", "--format=%s"]), "start");
}

/// The README's main command, end to end: the image into the real engine (from the
/// test base, as this machine cannot pull the pinned python base), the CLI for this machine,
/// checksums and notes; the formula is skipped with its reason (`--all-targets` renders
/// it: the bench runs that, and the homebrew tests check the formula itself).
#[test]
fn snapshot_makes_every_artifact_it_lists_and_publishes_nothing() {
    test_support::engine::require_engine();
    let base = test_support::base_image::require("amd64");
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("dist");
    let sh = shell();
    let root = project_root();
    let tags_before = cmd!(sh, "git -C {root} tag").read().unwrap();
    let summary = run_ok(cmd!(sh, "{XTASK} release --snapshot --base-image {base} --out {out}"));

    let short = cmd!(sh, "git -C {root} rev-parse --short=7 HEAD").read().unwrap();
    // The next patch with a `snapshot-<sha>` pre-release: above the workspace's release.
    assert!(summary.contains(&format!("-snapshot-{short}")), "{summary}");
    assert!(summary.contains("image     stigmer-agent-runner:local (local engine)"), "{summary}");
    // Every path the summary names exists.
    let listed: Vec<&str> = summary
        .lines()
        .filter_map(|line| line.trim().split_once(' ').map(|(_, path)| path.trim()))
        .filter(|path| path.contains("dist/"))
        .collect();
    // The tarball, the installer, checksums, manifest and notes.
    assert_eq!(listed.len(), 5, "{summary}");
    assert!(summary.contains("  installer "), "{summary}");
    assert!(
        summary.contains("skipped   Homebrew formula: it needs every platform's tarball, pass --all-targets")
    );
    for path in listed {
        assert!(
            Path::new(path).exists() || project_root().join(path).exists(),
            "{path} is listed but missing"
        );
    }
    sh.change_dir(&out);
    run_ok(cmd!(sh, "sha256sum --check --strict checksums.txt"));
    let archive = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_str().unwrap().ends_with(".tar.gz"))
        .unwrap();
    let unpacked = tempfile::tempdir().unwrap();
    let unpacked = unpacked.path();
    cmd!(sh, "tar -xzf {archive} -C {unpacked} --strip-components=1").run().unwrap();
    let version = run_ok(cmd!(sh, "{unpacked}/stigmer -V"));
    assert!(version.starts_with("stigmer ") && version.contains(&format!("-snapshot-{short}")), "{version}");
    let notes = std::fs::read_to_string(out.join("RELEASE_NOTES.md")).unwrap();
    assert!(notes.starts_with("> **Snapshot.**"), "{notes}");
    assert!(
        notes.contains("Built into the local engine: `stigmer-agent-runner:local` (linux/amd64)"),
        "{notes}"
    );
    assert!(
        notes.contains("- Skipped linux/arm64: a snapshot builds this machine's platform only"),
        "{notes}"
    );
    assert!(!notes.contains("https://"), "a snapshot's notes offer downloads:\n{notes}");
    assert_eq!(cmd!(sh, "git -C {root} tag").read().unwrap(), tags_before);
}

/// release.yml run by hand with dry-run on, on a branch, as its jobs call xtask (the
/// `cli` jobs' `dist` aside: stand-in archives keep this test fast; dist has its own).
/// GitHub's API cannot be reached here, so `github-release` plans as for a new release;
/// a local registry stands in for REGISTRY (a dry run's platform jobs build and log in,
/// and push nothing), with a small image's context for the agent-runner's.
/// It must work before the first release and after one, and change nothing.
#[test]
fn the_workflow_dry_run_works_on_a_branch_before_and_after_a_release() {
    let repo = crate::release::release_repo();
    let fixture = crate::publish::Fixture::new(TestRegistry::start());
    let (host, base, context) = (fixture.registry.host(), fixture.base.clone(), fixture.context.path());
    let sh = shell();
    for state in ["before the first release", "after a release"] {
        if state == "after a release" {
            run_ok(cmd!(sh, "{XTASK} release --bump minor --push").env("XTASK_PROJECT_ROOT", repo.work()));
        }
        let temp = tempfile::tempdir().unwrap();
        let (plan, dist, outputs) =
            (temp.path().join("plan/plan.json"), temp.path().join("dist"), temp.path().join("outputs"));
        let tap = tap();
        let refs_before =
            (repo.git(&["show-ref"]), repo.git(&["status", "--porcelain"]), tap.git(&["show-ref"]));
        let xtask = |args: &[&str]| {
            let args = args.to_vec();
            cmd!(sh, "{XTASK} {args...}")
                .env("XTASK_PROJECT_ROOT", repo.work())
                .env("GITHUB_EVENT_NAME", "workflow_dispatch")
                .env("GITHUB_REF_TYPE", "branch")
                .env("GITHUB_REF_NAME", "main")
                .env("DRY_RUN_INPUT", "true")
                .env("GITHUB_OUTPUT", &outputs)
                .env_remove("GITHUB_STEP_SUMMARY")
        };
        let plan_arg = plan.to_str().unwrap();
        run_ok(xtask(&["plan", "--github", "--registry", &host, "--out", plan_arg]));
        let outputs = std::fs::read_to_string(&outputs).unwrap();
        assert!(
            outputs.contains("dry-run=true\n") && outputs.contains("homebrew=false\n"),
            "{state}: {outputs}"
        );
        let version = outputs.lines().find_map(|l| l.strip_prefix("version=v")).unwrap().to_owned();
        assert!(version.contains("-snapshot-"), "{state}: {version}");

        let writes_before = fixture.registry.writes();
        let by_digest = crate::run(xtask(&[
            "image",
            "--push",
            "--plan",
            plan_arg,
            "--platform",
            "linux/amd64",
            "--by-digest",
            "--base-image",
            &base,
            "--context",
            context.to_str().unwrap(),
        ]));
        let stderr = String::from_utf8_lossy(&by_digest.stderr);
        assert!(by_digest.status.success() && by_digest.stdout.is_empty(), "{state}: {stderr}");
        assert!(stderr.contains("dry run: built linux/amd64 as sha256:"), "{state}: {stderr}");
        assert_eq!(fixture.registry.writes(), writes_before, "{state}: the dry run pushed");
        let merged = run_ok(xtask(&["image", "--merge", "none-in-a-dry-run", "--plan", plan_arg]));
        assert!(merged.contains("dry run: nothing built, nothing pushed"), "{state}: {merged}");

        std::fs::create_dir_all(&dist).unwrap();
        for archive in ALL {
            std::fs::write(dist.join(format!("stigmer-v{version}-{archive}")), archive).unwrap();
        }
        let dist_arg = dist.to_str().unwrap();
        run_ok(xtask(&["checksums", dist_arg]));
        run_ok(xtask(&["release-notes", "--plan", plan_arg, "--dir", dist_arg, "--image-digest", ""]));
        let notes = std::fs::read_to_string(dist.join("RELEASE_NOTES.md")).unwrap();
        assert!(notes.starts_with("> **Snapshot.**") && !notes.contains("https://"), "{state}: {notes}");
        let github = run_ok(xtask(&["github-release", "--plan", plan_arg, "--dir", dist_arg]));
        assert!(github.contains(&format!("create  draft release v{version}")), "{state}: {github}");
        assert!(github.contains("dry run: nothing created or uploaded"), "{state}: {github}");
        let checksums_arg = dist.join("checksums.txt");
        let tap_arg = tap.work();
        let homebrew = run_ok(
            cmd!(sh, "{XTASK} homebrew --plan {plan} --checksums {checksums_arg} --tap {tap_arg} --push")
                .env("XTASK_PROJECT_ROOT", repo.work()),
        );
        assert!(
            homebrew.contains("+  version \"") && homebrew.contains("dry run: nothing written"),
            "{state}: {homebrew}"
        );

        let refs_after =
            (repo.git(&["show-ref"]), repo.git(&["status", "--porcelain"]), tap.git(&["show-ref"]));
        assert_eq!(refs_after, refs_before, "{state}: the dry run changed a repository");
        assert!(!tap.work().join("Formula").exists(), "{state}: the dry run wrote the formula");
    }
}

/// The backport scenario on the tap: v1.3.0's formula is pushed, then v1.2.4 from a
/// maintenance branch asks to push its own, then v1.3.0's job runs again: the tap
/// names 1.3.0 throughout and gets exactly one commit.
#[test]
fn a_backport_never_moves_the_formula_back() {
    let tap = tap();
    let temp = tempfile::tempdir().unwrap();
    let sh = shell();
    let tap_dir = tap.work();
    let formula = tap_dir.join("Formula/stigmer.rb");
    // No image is published: the tap's formula alone holds the backport back.
    let registry = TestRegistry::start();
    let host = registry.host();
    for (version, expected) in [
        ("1.3.0", "committed `stigmer 1.3.0`"),
        (
            "1.2.4",
            "the formula stays (v1.3.0 is newer on its line, in the tap's formula or the published releases)",
        ),
        ("1.3.0", "the formula is unchanged: no commit"),
    ] {
        let dir = temp.path().join(version);
        checksums(&dir, version, &ALL);
        let sums = dir.join("checksums.txt");
        let tag = format!("v{version}");
        let output = run_ok(cmd!(
            sh,
            "{XTASK} homebrew --version {tag} --registry {host} --checksums {sums} --tap {tap_dir} --push"
        ));
        assert!(output.contains(expected), "{version}: {output}");
        assert!(std::fs::read_to_string(&formula).unwrap().contains("version \"1.3.0\""));
    }
    assert_eq!(tap.git(&["log", "--format=%s"]), "stigmer 1.3.0\nstart");
}

#[test]
fn an_image_version_with_build_metadata_is_refused_before_anything_is_sent() {
    let sh = shell();
    let output =
        run_err(cmd!(sh, "{XTASK} image --push --registry 127.0.0.1:9 --version v1.2.3+build --dry-run"));
    assert!(output.contains("has build metadata (`+build`), which no image tag can hold"), "{output}");
    assert!(!output.contains("cannot connect"), "{output}");
}
