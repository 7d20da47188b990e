//! `cargo xtask release --bump` in throwaway repositories with a bare `origin`:
//! every bump kind, every preflight refusal (nothing changes), dry runs, and
//! failures injected with git hooks before and after the release commit.

use std::{collections::BTreeMap, path::Path};

use sha2::{Digest, Sha256};
use test_support::git::TestRepo;
use xshell::{cmd, Shell};

use crate::{run_err, run_ok, XTASK};

const CHANGELOG: &str = "# Changelog\n\n## [Unreleased]\n\n### Added\n\n- The first feature.\n\n[Unreleased]: https://github.com/stigmer/stigmer/commits/main\n";

/// A tiny workspace shaped like ours, committed and pushed to `origin`.
pub(crate) fn release_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write(
        "Cargo.toml",
        "[workspace]\nmembers = [\"cli\"]\nresolver = \"2\"\n\n[workspace.package]\n# The one product version.\nversion = \"0.1.0\"  # kept\nedition = \"2021\"\n",
    );
    repo.write(
        "cli/Cargo.toml",
        "[package]\nname = \"stigmer\"\nversion.workspace = true\nedition.workspace = true\n",
    );
    repo.write("cli/src/main.rs", "fn main() {}\n");
    repo.write(
        "agent-runner/pyproject.toml",
        "[project]\nname = \"stigmer-agent-runner\"\n# Same as Cargo.toml.\nversion = \"0.1.0\"\n",
    );
    repo.write("CHANGELOG.md", CHANGELOG);
    let sh = repo.shell();
    cmd!(sh, "cargo generate-lockfile --offline --quiet").run().unwrap();
    repo.write(".gitignore", "target/\n");
    repo.commit_all("start");
    repo.git(&["push", "--quiet", "origin", "main"]);
    repo
}

fn release<'a>(sh: &'a Shell, repo: &TestRepo, args: &[&str]) -> xshell::Cmd<'a> {
    cmd!(sh, "{XTASK} release {args...}").env("XTASK_PROJECT_ROOT", repo.work())
}

pub(crate) fn add_entry(repo: &TestRepo, entry: &str) {
    let changelog = std::fs::read_to_string(repo.work().join("CHANGELOG.md")).unwrap();
    let changelog =
        changelog.replacen("## [Unreleased]\n", &format!("## [Unreleased]\n\n### Fixed\n\n- {entry}\n"), 1);
    repo.write("CHANGELOG.md", &changelog);
    repo.commit_all(entry);
}

fn version(repo: &TestRepo) -> String {
    let manifest = std::fs::read_to_string(repo.work().join("Cargo.toml")).unwrap();
    let doc: toml_edit::DocumentMut = manifest.parse().unwrap();
    doc["workspace"]["package"]["version"].as_str().unwrap().to_owned()
}

/// Every file of the work tree (outside .git) with its hash, plus `git status` and
/// HEAD: equal snapshots mean the release left the repository byte-identical.
fn fingerprint(repo: &TestRepo) -> (BTreeMap<String, String>, String, String) {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if name == ".git" || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let hash: String = Sha256::digest(std::fs::read(&path).unwrap())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                out.insert(name, hash);
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(repo.work(), repo.work(), &mut files);
    (files, repo.git(&["status", "--porcelain"]), repo.git(&["rev-parse", "HEAD"]))
}

#[test]
fn a_minor_release_commits_tags_and_pushes_keeping_formatting() {
    let repo = release_repo();
    let sh = Shell::new().unwrap();
    let output = run_ok(release(&sh, &repo, &["--bump", "minor", "--push"]));
    assert!(output.contains("pushed main and v0.2.0"), "{output}");

    assert_eq!(repo.git(&["log", "-1", "--format=%s"]), "release: v0.2.0");
    assert_eq!(repo.git(&["cat-file", "-t", "v0.2.0"]), "tag", "the tag is not annotated");
    let remote = repo.remote().to_str().unwrap();
    assert!(repo.git(&["ls-remote", "--tags", remote]).contains("refs/tags/v0.2.0"));
    assert_eq!(
        repo.git(&["rev-parse", "HEAD"]),
        repo.git(&["ls-remote", remote, "refs/heads/main"]).split('\t').next().unwrap()
    );

    let manifest = std::fs::read_to_string(repo.work().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("# The one product version.\nversion = \"0.2.0\"  # kept\n"), "{manifest}");
    let pyproject = std::fs::read_to_string(repo.work().join("agent-runner/pyproject.toml")).unwrap();
    assert!(pyproject.contains("# Same as Cargo.toml.\nversion = \"0.2.0\"\n"), "{pyproject}");
    let lock = std::fs::read_to_string(repo.work().join("Cargo.lock")).unwrap();
    assert!(lock.contains("name = \"stigmer\"\nversion = \"0.2.0\""), "{lock}");
    let changelog = std::fs::read_to_string(repo.work().join("CHANGELOG.md")).unwrap();
    let today = chrono::Utc::now().date_naive().to_string();
    insta::assert_snapshot!(changelog.replace(&today, "YYYY-MM-DD"));
}

#[test]
fn every_bump_kind_in_sequence() {
    let repo = release_repo();
    let sh = Shell::new().unwrap();
    let steps = [
        ("rc", "0.2.0-rc.1"),
        ("rc", "0.2.0-rc.2"),
        ("minor", "0.2.0"),
        ("patch", "0.2.1"),
        ("major", "1.0.0"),
        ("1.4.0", "1.4.0"),
    ];
    for (bump, expected) in steps {
        add_entry(&repo, &format!("work before {expected}"));
        run_ok(release(&sh, &repo, &["--bump", bump]));
        assert_eq!(version(&repo), expected, "after --bump {bump}");
        assert_eq!(repo.git(&["describe", "--tags", "--exact-match"]), format!("v{expected}"));
    }
    let changelog = std::fs::read_to_string(repo.work().join("CHANGELOG.md")).unwrap();
    // The 1.4.0 comparison starts at the last release, not at a candidate.
    assert!(
        changelog.contains("[1.4.0]: https://github.com/stigmer/stigmer/compare/v1.0.0...v1.4.0"),
        "{changelog}"
    );
    assert!(
        changelog.contains("[0.2.0]: https://github.com/stigmer/stigmer/releases/tag/v0.2.0"),
        "{changelog}"
    );
}

#[test]
fn each_preflight_refusal_names_the_fix_and_changes_nothing() {
    let sh = Shell::new().unwrap();
    type Setup = fn(&TestRepo);
    let cases: [(&str, Setup, &[&str], &str); 6] = [
        (
            "dirty",
            |r| r.write("notes.txt", "uncommitted\n"),
            &["--bump", "minor"],
            "uncommitted changes (1 paths): commit or stash them",
        ),
        (
            "branch",
            |r| {
                r.git(&["switch", "--quiet", "-c", "feature"]);
            },
            &["--bump", "minor"],
            "on branch \"feature\", not main: `git switch main`",
        ),
        (
            "behind",
            |r| {
                let other = tempfile::tempdir().unwrap();
                let (remote, clone) = (r.remote().to_str().unwrap(), other.path().join("clone"));
                let clone = clone.to_str().unwrap();
                r.git(&["clone", "--quiet", remote, clone]);
                r.git(&[
                    "-C",
                    clone,
                    "-c",
                    "user.name=x",
                    "-c",
                    "user.email=x@x",
                    "commit",
                    "--quiet",
                    "--allow-empty",
                    "-m",
                    "elsewhere",
                ]);
                r.git(&["-C", clone, "push", "--quiet", "origin", "main"]);
            },
            &["--bump", "minor"],
            "main is 1 commit(s) behind origin/main: `git pull --ff-only`",
        ),
        (
            "tagged",
            |r| {
                r.git(&["tag", "v0.2.0"]);
            },
            &["--bump", "minor"],
            "tag v0.2.0 exists already",
        ),
        (
            "empty changelog",
            |r| {
                r.write("CHANGELOG.md", "# Changelog\n\n## [Unreleased]\n\n### Added\n\n");
                r.commit_all("empty");
                r.git(&["push", "--quiet", "origin", "main"]);
            },
            &["--bump", "minor"],
            "Unreleased section is empty",
        ),
        ("smaller", |_| {}, &["--bump", "0.0.9"], "0.0.9 is not greater than the current version 0.1.0"),
    ];
    for (name, setup, args, expected) in cases {
        let repo = release_repo();
        setup(&repo);
        let before = fingerprint(&repo);
        let output = run_err(release(&sh, &repo, args));
        assert!(output.contains(expected), "{name}: expected {expected:?} in:\n{output}");
        assert_eq!(fingerprint(&repo), before, "{name}: the refusal changed the repository");
        assert!(repo.git(&["tag", "--list"]).lines().all(|t| t != "v0.2.0" || name == "tagged"), "{name}");
    }
}

#[test]
fn a_dry_run_prints_every_diff_and_writes_nothing() {
    let repo = release_repo();
    let sh = Shell::new().unwrap();
    let before = fingerprint(&repo);
    let output = run_ok(release(&sh, &repo, &["--bump", "minor", "--dry-run"]));
    for expected in [
        "+++ Cargo.toml",
        "-version = \"0.1.0\"  # kept",
        "+version = \"0.2.0\"  # kept",
        "+++ Cargo.lock",
        "+++ agent-runner/pyproject.toml",
        "+## [0.2.0] - ",
        "dry run: nothing written",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
    assert_eq!(fingerprint(&repo), before);
}

fn hook(repo: &TestRepo, name: &str, script: &str) {
    let path = repo.work().join(".git/hooks").join(name);
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_failed_commit_restores_every_file_and_a_rerun_completes() {
    let repo = release_repo();
    let sh = Shell::new().unwrap();
    hook(&repo, "pre-commit", "#!/bin/sh\necho 'injected pre-commit failure' >&2\nexit 1\n");
    let before = fingerprint(&repo);
    let output = run_err(release(&sh, &repo, &["--bump", "minor"]));
    assert!(output.contains("every file was put back as it was"), "{output}");
    assert_eq!(fingerprint(&repo), before);

    std::fs::remove_file(repo.work().join(".git/hooks/pre-commit")).unwrap();
    run_ok(release(&sh, &repo, &["--bump", "minor"]));
    assert_eq!(version(&repo), "0.2.0");
    assert_eq!(repo.git(&["describe", "--tags", "--exact-match"]), "v0.2.0");
}

#[test]
fn a_failure_after_the_commit_is_finished_by_a_rerun_without_bumping_twice() {
    let repo = release_repo();
    let sh = Shell::new().unwrap();
    // Refuse the tag: the release commit exists, the tag does not.
    hook(
        &repo,
        "reference-transaction",
        "#!/bin/sh\n[ \"$1\" = prepared ] || exit 0\nwhile read -r old new ref; do\n  case \"$ref\" in refs/tags/*) echo 'injected tag failure' >&2; exit 1;; esac\ndone\n",
    );
    let output = run_err(release(&sh, &repo, &["--bump", "minor", "--push"]));
    assert!(output.contains("creating the tag"), "{output}");
    assert_eq!(repo.git(&["log", "-1", "--format=%s"]), "release: v0.2.0");
    assert_eq!(repo.git(&["tag", "--list"]), "");

    std::fs::remove_file(repo.work().join(".git/hooks/reference-transaction")).unwrap();
    let output = run_ok(release(&sh, &repo, &["--bump", "minor", "--push"]));
    assert!(output.contains("finishing that release"), "{output}");
    assert_eq!(version(&repo), "0.2.0", "the rerun bumped a second time");
    let remote = repo.remote().to_str().unwrap();
    assert!(repo.git(&["ls-remote", "--tags", remote]).contains("refs/tags/v0.2.0"));

    // A third run is a no-op that says so.
    let output = run_ok(release(&sh, &repo, &["--bump", "minor", "--push"]));
    assert!(output.contains("v0.2.0 already tags HEAD"), "{output}");
}

/// Refs of the work tree and of origin, with the fingerprint: what a dry run must
/// leave exactly as it found.
fn everything(repo: &TestRepo) -> (BTreeMap<String, String>, String, String, String, String) {
    let (files, status, head) = fingerprint(repo);
    let remote = repo.remote().to_str().unwrap().to_owned();
    (files, status, head, repo.git(&["show-ref"]), repo.git(&["ls-remote", &remote]))
}

#[test]
fn a_dry_run_writes_nothing_in_any_state_a_release_can_resume_from() {
    let repo = release_repo();
    let sh = Shell::new().unwrap();
    let dry_run = |args: &[&str], expected: &[&str]| {
        let before = everything(&repo);
        let output = run_ok(release(&sh, &repo, args));
        for text in expected {
            assert!(output.contains(text), "{args:?}: expected {text:?} in:\n{output}");
        }
        assert!(output.contains("dry run: nothing written"), "{output}");
        assert_eq!(everything(&repo), before, "{args:?} changed the repository or origin");
    };
    dry_run(&["--bump", "minor", "--dry-run", "--push"], &["plan: release v0.2.0"]);

    // After the release commit, with the tag refused.
    hook(
        &repo,
        "reference-transaction",
        "#!/bin/sh\n[ \"$1\" = prepared ] || exit 0\nwhile read -r old new ref; do\n  case \"$ref\" in refs/tags/*) exit 1;; esac\ndone\n",
    );
    run_err(release(&sh, &repo, &["--bump", "minor"]));
    std::fs::remove_file(repo.work().join(".git/hooks/reference-transaction")).unwrap();
    assert_eq!(repo.git(&["log", "-1", "--format=%s"]), "release: v0.2.0");
    dry_run(
        &["--bump", "minor", "--dry-run", "--push"],
        &["finishing that release", "tag v0.2.0 (annotated)"],
    );
    // Another bump than the one that made the commit is refused, naming the way out.
    let before = everything(&repo);
    let other = run_err(release(&sh, &repo, &["--bump", "major", "--dry-run"]));
    assert!(other.contains("`--bump major` from 0.1.0 is not 0.2.0. Finish v0.2.0 first"), "{other}");
    assert_eq!(everything(&repo), before);

    // After the tag, before the push.
    run_ok(release(&sh, &repo, &["--bump", "minor"]));
    dry_run(&["--bump", "minor", "--dry-run", "--push"], &["push main and v0.2.0 to origin"]);

    // After a partial push: the branch went out, the tag did not.
    repo.git(&["push", "--quiet", "origin", "main"]);
    dry_run(&["--bump", "0.2.0", "--dry-run", "--push"], &["push main and v0.2.0 to origin"]);

    run_ok(release(&sh, &repo, &["--bump", "minor", "--push"]));
    let remote = repo.remote().to_str().unwrap();
    assert!(repo.git(&["ls-remote", "--tags", remote]).contains("refs/tags/v0.2.0"));
    dry_run(&["--bump", "minor", "--dry-run", "--push"], &["nothing is missing"]);
}

/// What broke once: xtask pinned `test-support = { version = "0.1.0", path = ... }`, the
/// bump moved test-support to 0.2.0, and the release commit no longer resolved.
#[test]
fn a_bump_that_leaves_a_pinned_workspace_dependency_behind_is_refused_and_undone() {
    let repo = release_repo();
    repo.write(
        "helper/Cargo.toml",
        "[package]\nname = \"helper\"\nversion.workspace = true\nedition.workspace = true\n",
    );
    repo.write("helper/src/lib.rs", "");
    repo.write(
        "cli/Cargo.toml",
        "[package]\nname = \"stigmer\"\nversion.workspace = true\nedition.workspace = true\n\n[dependencies]\nhelper = { version = \"0.1.0\", path = \"../helper\" }\n",
    );
    let manifest = std::fs::read_to_string(repo.work().join("Cargo.toml")).unwrap();
    repo.write("Cargo.toml", &manifest.replace("members = [\"cli\"]", "members = [\"cli\", \"helper\"]"));
    let sh = repo.shell();
    cmd!(sh, "cargo generate-lockfile --offline --quiet").run().unwrap();
    repo.commit_all("a pinned path dependency");
    repo.git(&["push", "--quiet", "origin", "main"]);

    let before = everything(&repo);
    let output = run_err(release(&sh, &repo, &["--bump", "minor"]));
    assert!(output.contains("checking that the bumped workspace resolves"), "{output}");
    assert!(output.contains("every file was put back as it was"), "{output}");
    assert_eq!(everything(&repo), before);
}

#[test]
fn build_metadata_is_refused_before_anything_changes() {
    let repo = release_repo();
    let sh = Shell::new().unwrap();
    let before = everything(&repo);
    let output = run_err(release(&sh, &repo, &["--bump", "0.3.0+meta"]));
    assert!(output.contains("has build metadata (`+meta`), which no image tag can hold"), "{output}");
    assert_eq!(everything(&repo), before);
}

/// A throwaway repository holding this checkout as it is now (tracked files and
/// untracked ones git does not ignore), with a bare `origin`.
pub(crate) fn copy_of_this_checkout() -> TestRepo {
    let root = test_support::project_root();
    let sh = Shell::new().unwrap();
    sh.change_dir(&root);
    let files = cmd!(sh, "git ls-files --cached --others --exclude-standard").read().unwrap();
    let repo = TestRepo::new();
    for file in files.lines() {
        let from = root.join(file);
        if from.is_file() {
            let to = repo.work().join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
    }
    repo.commit_all("this checkout");
    repo.git(&["push", "--quiet", "origin", "main"]);
    repo
}

#[test]
fn the_commit_a_minor_release_makes_builds_and_snapshots() {
    let repo = copy_of_this_checkout();
    let sh = Shell::new().unwrap();
    let before = version(&repo);
    run_ok(release(&sh, &repo, &["--bump", "minor", "--push"]));
    let after = version(&repo);
    assert_ne!(after, before);

    // The released tree, as release.yml checks it out: every cargo command it runs must
    // work (the lock file agrees with the bumped version: `--locked`).
    let tree = repo.shell();
    // Its own target directory, so that this run's binaries in target/ stay as the tests
    // use them; the suite's build directory, so that the dependencies it compiles (the
    // same crates, features and profile) are not compiled again. Only the workspace's
    // own crates, at another path, are. Its release builds (`dist`'s, below dist/) are
    // the suite's too: dist's flags name no checkout.
    let root = test_support::project_root();
    let (target, build_dir) = (root.join("target/released-tree"), root.join("target"));
    test_support::share_dist_builds(&target);
    // As a shell runs them: with this test's CARGO_PKG_* and the like, ring's build
    // script would run again, and rustls and reqwest after it, here and in the suite.
    let cargo = |cmd: xshell::Cmd<'_>| -> String {
        let cmd = test_support::as_a_shell_runs_it(cmd);
        run_ok(cmd.env("CARGO_TARGET_DIR", &target).env("CARGO_BUILD_BUILD_DIR", &build_dir))
    };
    run_ok(cmd!(tree, "cargo metadata --locked --format-version 1"));
    // What ci/release-tool.sh builds in release.yml's plan job.
    cargo(cmd!(tree, "cargo build --locked --package xtask"));
    // No base image here: the snapshot says it skipped the image, and builds the rest.
    let output = cargo(cmd!(tree, "cargo xtask release --snapshot"));
    let snapshot = format!("v{}-snapshot-", bump_patch(&after));
    assert!(output.contains(&format!("snapshot {}", &snapshot[1..])), "{output}");
    let archive = std::fs::read_dir(repo.work().join("dist"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .find(|name| name.ends_with("-linux-amd64.tar.gz"))
        .unwrap_or_else(|| panic!("no linux-amd64 tarball:\n{output}"));
    assert!(archive.starts_with(&format!("stigmer-{snapshot}")), "{archive}");
}

fn bump_patch(version: &str) -> String {
    let mut version = semver::Version::parse(version).unwrap();
    version.patch += 1;
    version.to_string()
}
