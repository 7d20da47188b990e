//! release.yml rehearsed the way GitHub runs it, on our machines.
//!
//! `cargo xtask release --bump minor --push` cuts a release of this project in a
//! throwaway repository with a bare origin. Then `.github/workflows/release.yml` runs,
//! first as a dry run dispatched on `main` (which must write nothing), then for the
//! tag's push: every job in `needs` order, each matrix entry separately, each in a
//! fresh clone of the run's ref at the same path (as every GitHub runner checks out
//! to the same path), with the job's environment, its `run:` scripts read from the YAML
//! and run by bash as a runner would, and only the artifacts and outputs the workflow
//! hands it. Every `uses:` the workflow has must be one this file knows; anything else
//! it meets (an expression, a key, an action) fails the test, so the workflow and the
//! rehearsal cannot drift apart.
//!
//! What stands in for GitHub, and nothing else:
//! - ghcr.io: a TestRegistry with auth (the workflow's `REGISTRY`), with the test base
//!   image pushed there and pinned by digest in the copy's Dockerfile, as a bump pins
//!   python's (no image can be pulled from Docker Hub here); its
//!   login is in the job's Docker config, where GITHUB_TOKEN is ghcr.io's. So the verify
//!   job, which holds no token and reads a public package anonymously on GitHub, reads
//!   with that login here: whether the package is public is GitHub's to say
//!   (`workflows.rs` checks the job asks for no registry access).
//! - The runner's Docker: dockerd 26 with the containerd image store, and a Docker config
//!   of the job's own. `docker/setup-buildx-action` does here what it does on GitHub: it
//!   makes a `docker-container` builder current, from the BuildKit image `ci/setup.sh`
//!   builds and with the machine's buildx (moby/buildkit cannot be pulled: the pinned
//!   `version` and `driver-opts` image are checked for a pin and otherwise not used), so
//!   xtask's automatic choice takes buildx and the image-platform jobs push by digest
//!   through it. BuildKit's default SBOM
//!   scanner (docker/buildkit-syft-scanner on Docker Hub) is the test scanner, served by
//!   a registry that the builder's configuration names as Docker Hub's mirror.
//! - The release tool: the xtask binary of this test run, run with the job's checkout as
//!   its project root (the tag's xtask sources are this tree's: the test checks that the
//!   release commit changed none of them). Where a job builds it (ci/release-tool.sh's
//!   `cargo build --locked --package xtask`: the release-tool jobs, and the CLI jobs on
//!   runners other than Linux x64), a wrapper of that binary takes the built one's place;
//!   the release-tool jobs' are handed to the later jobs as artifacts and checked
//!   against their sha256 outputs, as on GitHub. Cargo's target directory
//!   is shared between the jobs, so the five CLI targets compile once; the rerun checks
//!   the archives do not depend on it.
//! - The CLI runners: none; every CLI job runs on `ubuntu-24.04`, as this machine is,
//!   and builds as it does there: linux-amd64 with cargo, each other target with the
//!   pinned zig its job installs into a venv in the runner's tool cache (GITHUB_PATH
//!   puts it first). The tool cache (`RUNNER_TOOL_CACHE`) is kept between jobs and
//!   runs, as on a runner that is reused; a GitHub-hosted runner's starts empty. It
//!   holds the cross linker already, at the versions the step names: this machine's
//!   own install (ci/setup.sh's, the same pins), so that the step finds it and the jobs
//!   link with the cargo-zigbuild the rest of the suite uses (`put_the_suites_cross_linker_in`
//!   says why; the venv the step makes is not exercised here). The
//!   release profile is the suite's (`cargo xtask test` builds the CLI unoptimised,
//!   test.rs says why), not the fat LTO release.yml's runners build.
//! - GitHub's API: `gh` is test-support's stand-in (`gh_stand_in.py`), which keeps
//!   releases, their assets and which one is Latest in a directory: the plan job lists
//!   the published releases, and `github-release` creates and publishes the release
//!   there, as it would on GitHub; the verify job downloads the assets from it over
//!   HTTP, as users download them from the release.
//! - Sigstore (Fulcio, Rekor) and the job's OIDC token: keyless signing (`--keyless`)
//!   becomes signing with a cosign key pair made for the test (`--cosign-key`, no
//!   transparency log), and `verify-release` checks against its public half (`--key`);
//!   `sigstore/cosign-installer` finds the machine's cosign. GitHub's attestation store:
//!   `actions/attest` only checks that its subjects exist. The verify
//!   job clones the tap's bare repository where it would clone the GitHub one.
//! - The tap: a bare repository; the job's `environment:` (its secrets and reviewers) is
//!   GitHub's and not rehearsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use test_support::buildx::{BuildxEnv, ContainerBuilder};
use test_support::registry::TestRegistry;
use test_support::{project_root, shell};
use xshell::cmd;

use crate::{run_ok, sha256_hex, XTASK};

/// What is rewritten in the scripts, and why: each must be found in release.yml.
const REWRITES: [(&str, &str, &str); 5] = [
    // Keyless signing needs GitHub's OIDC token and sigstore's services: a test key.
    ("--keyless", r#"--cosign-key "$REHEARSAL_COSIGN_KEY""#, "sigstore"),
    (r#""$XTASK" verify-release "#, r#""$XTASK" verify-release --key "$REHEARSAL_COSIGN_PUB" "#, "sigstore"),
    ("https://github.com/stigmer/homebrew-tap", r#""$REHEARSAL_TAP""#, "the tap on GitHub"),
    // The release's assets, downloaded as users download them: from the gh stand-in's.
    ("https://github.com/$GH_REPO/releases/download/", "$REHEARSAL_DOWNLOADS/", "GitHub's release downloads"),
    // The repository a rebuild clones the tag from: the rehearsal's bare origin.
    (r#""https://github.com/$GH_REPO.git""#, r#""$REHEARSAL_ORIGIN""#, "the repository on GitHub"),
];

#[test]
fn release_yml_publishes_once_and_a_rerun_changes_nothing() {
    test_support::engine::require_engine();
    let registry = TestRegistry::start_with_auth();
    let base = test_support::base_image::push_index(&registry);
    let sh = shell();
    // Docker Hub's stand-in, as the builder's mirror: it serves BuildKit's default scanner.
    let hub = TestRegistry::start();
    let scanner = test_support::buildx::sbom_scanner(&BuildxEnv::new(&registry), &registry);
    let creds = registry.skopeo_creds().last().cloned().unwrap();
    let hub_scanner = format!("docker://{}/docker/buildkit-syft-scanner:stable-1", hub.host());
    run_ok(cmd!(sh, "skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false --src-creds {creds} docker://{scanner} {hub_scanner}"));
    let buildkitd = tempfile::tempdir().unwrap();
    let buildkitd_toml = buildkitd.path().join("buildkitd.toml");
    let hub_host = hub.host();
    std::fs::write(
        &buildkitd_toml,
        format!("[registry.\"docker.io\"]\n  mirrors = [\"{hub_host}\"]\n[registry.\"{hub_host}\"]\n  http = true\n"),
    )
    .unwrap();

    // The base, pinned where release.yml's jobs read it (the Dockerfile, through the
    // plan): the test base by the digest of its index. Then the release commit, made and
    // pushed as a maintainer would.
    let project = crate::release::copy_of_this_checkout();
    let base_digest =
        format!("sha256:{}", sha256_hex(&registry_manifest(&registry, &format!("docker://{base}"))));
    let dockerfile = std::fs::read_to_string(project.work().join("agent-runner/Dockerfile")).unwrap();
    let pinned: String = dockerfile
        .split_inclusive('\n')
        .map(|line| match line.starts_with("ARG BASE_IMAGE=") {
            true => format!("ARG BASE_IMAGE={base}@{base_digest}\n"),
            false => line.to_owned(),
        })
        .collect();
    project.write("agent-runner/Dockerfile", &pinned);
    project.commit_all("pin the test base");
    project.git(&["push", "--quiet", "origin", "main"]);
    let released =
        run_ok(cmd!(sh, "{XTASK} release --bump minor --push").env("XTASK_PROJECT_ROOT", project.work()));
    let tag = project.git(&["describe", "--tags", "--exact-match"]);
    assert!(released.contains(&tag), "{released}");
    let version = tag.strip_prefix('v').unwrap().to_owned();
    let changed = project.git(&["diff", "--name-only", &format!("{tag}~1"), &tag]);
    assert!(
        !changed.lines().any(|path| path.starts_with("xtask/src/") || path.starts_with("xtask/tests/")),
        "the release commit changed xtask's sources, so this test's xtask is not the tag's:\n{changed}"
    );
    let tap = crate::release_artifacts::tap();

    let keys = test_support::cosign::KeyPair::generate();
    let github = test_support::github::GitHub::new();
    let downloads = github.serve_downloads();
    let rehearsal = Rehearsal {
        github: &github,
        downloads: &downloads.url,
        origin: project.remote().to_owned(),
        tap: tap.remote().to_owned(),
        keys: &keys,
        tag: tag.clone(),
        stand_ins: BTreeMap::from([("REGISTRY".to_owned(), registry.host())]),
        registry: &registry,
        buildkitd_toml,
    };
    // First a dry run, as a maintainer tries the workflow: "Run workflow" on main, which
    // the release commit is the tip of, with dry-run on. It builds both platforms and
    // every CLI target (which the tag's run then takes from dist's cache), and writes
    // nothing: no registry write, no GitHub release, no commit to the tap.
    let tap_refs = || tap.git(&["--git-dir", tap.remote().to_str().unwrap(), "show-ref"]);
    let tap_before = tap_refs();
    let writes_before = registry.writes().len();
    assert_eq!(
        project.git(&["rev-parse", "origin/main"]),
        project.git(&["rev-parse", &format!("{tag}^{{commit}}")])
    );
    let dry = rehearsal.run_ok(Trigger::DryRunOn("main"));
    for arch in ["amd64", "arm64"] {
        let log = &dry.job(&format!("image-platform ({arch})")).log;
        assert!(log.contains(&format!("dry run: built linux/{arch} as sha256:")), "{log}");
        assert!(log.contains("pushed nothing"), "{log}");
    }
    let snapshot = format!(
        "v{}-snapshot-",
        version
            .rsplit_once('.')
            .map(|(minor, patch)| format!("{minor}.{}", patch.parse::<u32>().unwrap() + 1))
            .unwrap()
    );
    assert!(
        dry.artifacts_matching("dist-").keys().all(|name| name.starts_with(&format!("stigmer-{snapshot}"))),
        "{:?}",
        dry.artifacts_matching("dist-")
    );
    assert_eq!(dry.artifacts_matching("dist-").len(), 5, "{:?}", dry.artifacts_matching("dist-"));
    let written = registry.writes();
    assert_eq!(&written[writes_before..], &[] as &[(String, String)], "the dry run wrote to the registry");
    assert!(github.releases().is_empty(), "the dry run made a release: {:?}", github.releases());
    assert_eq!(tap_refs(), tap_before, "the dry run pushed to the tap");
    let called: Vec<String> =
        dry.xtask_calls.iter().map(|(job, args)| format!("{job}: {}", args[0])).collect();
    assert!(called.contains(&"homebrew-dry-run: homebrew".to_owned()), "{called:?}");
    for not_in_a_dry_run in ["image: verify-image", "homebrew: homebrew", "verify: verify-release"] {
        assert!(!called.contains(&not_in_a_dry_run.to_owned()), "{called:?}");
    }

    let first = rehearsal.run();
    let image_job = first.job("image");
    let digest = first.outputs["image"]["digest"].clone();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "image job's digest output: {digest:?}");
    for arch in ["amd64", "arm64"] {
        let log = &first.job(&format!("image-platform ({arch})")).log;
        assert!(log.contains("builder      buildx") && log.contains("docker-container driver"), "{log}");
    }
    // Each platform's attestation manifest is in the index, with provenance and an SBOM.
    let repository = registry.repository("agent-runner");
    let index = registry_manifest(&registry, &format!("docker://{repository}@{digest}"));
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let attestations: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .collect();
    assert_eq!(attestations.len(), 2, "{index:#}");
    for attestation in attestations {
        let reference = format!("docker://{repository}@{}", attestation["digest"].as_str().unwrap());
        let manifest: serde_json::Value =
            serde_json::from_slice(&registry_manifest(&registry, &reference)).unwrap();
        let predicates: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|layer| layer["annotations"]["in-toto.io/predicate-type"].as_str())
            .collect();
        assert!(
            predicates.iter().any(|p| p.contains("provenance"))
                && predicates.iter().any(|p| p.contains("spdx")),
            "{reference}: {predicates:?}"
        );
    }
    assert!(
        image_job.log.contains(&format!("==> published {}", registry.repository("agent-runner"))),
        "{}",
        image_job.log
    );

    // Everything the workflow calls went through the release tool, job by job.
    let called: Vec<String> =
        first.xtask_calls.iter().map(|(job, args)| format!("{job}: {}", args[0])).collect();
    assert_eq!(
        called,
        [
            "plan: plan",
            "image-platform (amd64): image",
            "image-platform (arm64): image",
            "image: image",
            "image: verify-image",
            "cli (darwin-arm64): dist",
            "cli (darwin-amd64): dist",
            "cli (linux-amd64): dist",
            "cli (linux-arm64): dist",
            "cli (windows-amd64): dist",
            "release: checksums",
            "release: release-notes",
            "release: checksums",
            "release: github-release",
            "homebrew: homebrew",
            "verify: verify-release",
        ],
        "the jobs' xtask calls, in order"
    );
    // The tool is built once per Linux platform, by jobs that can write nothing, and
    // handed down to every other job.
    assert_eq!(
        first.tool_builds,
        ["release-tool (linux-x64)", "release-tool (linux-arm64)"],
        "the jobs that built xtask"
    );

    // What was published: the version and the pointers the plan moves, on one index.
    let tags = registry_tags(&registry);
    let minor = version.rsplit_once('.').unwrap().0.to_owned();
    let major = version.split('.').next().unwrap().to_owned();
    for pointer in [tag.clone(), format!("v{minor}"), format!("v{major}"), "latest".to_owned()] {
        assert_eq!(tags.get(&pointer), Some(&digest), "{pointer} in {tags:?}");
    }
    let release_dir = first.artifacts.join("checksums");
    let checksums = std::fs::read_to_string(release_dir.join("checksums.txt")).unwrap();
    // install.sh and the five archives.
    assert_eq!(checksums.lines().count(), 6, "{checksums}");
    let notes = &first.job("release").log;
    assert!(notes.contains(&format!("create  draft release {tag}")), "{notes}");
    assert!(notes.contains(&format!("{tag} is published with 8 asset(s)")), "{notes}");
    assert_eq!(github.latest().as_ref(), Some(&tag), "{:?}", github.releases());
    let published = &github.releases()[0];
    assert!(!published.draft && published.assets.len() == 8, "{published:?}");
    let summary = first.job("release").summary.clone();
    assert!(summary.contains(&digest), "the release notes do not name the verified digest:\n{summary}");
    let formula = tap.git(&["--git-dir", tap.remote().to_str().unwrap(), "show", "main:Formula/stigmer.rb"]);
    // Every tarball; the installer and the Windows zip are assets beside them, in no formula.
    let in_formula = |line: &&str| !line.ends_with("  install.sh") && !line.ends_with(".zip");
    for line in checksums.lines().filter(in_formula) {
        let sha = line.split_whitespace().next().unwrap();
        assert!(formula.contains(sha), "the formula lacks {line}:\n{formula}");
    }
    assert!(formula.contains(&format!("version \"{version}\"")), "{formula}");
    // Signed, and checked as a whole by the last job.
    let signing = &image_job.log;
    assert!(signing.find("==> signing") > signing.find("==> verifying"), "{signing}");
    assert!(signing.find("==> signing") < signing.find("latest   ->"), "{signing}");
    let verified = &first.job("verify").log;
    assert!(verified.contains(&format!("release {tag} verified: ")), "{verified}");
    // Rebuilt from a clone of the tag at another path, compiled again: the same bytes.
    let rebuilt =
        verified.lines().find(|line| line.starts_with("rebuild") && line.contains("linux-amd64.tar.gz"));
    assert!(rebuilt.is_some_and(|line| line.ends_with("): the same bytes")), "{verified}");
    // The signature as users download it: a Sigstore bundle that a check by neither
    // cosign nor its libraries accepts too.
    let (bundle, sums) =
        (github.asset(&tag, "checksums.txt.sigstore.json"), github.asset(&tag, "checksums.txt"));
    crate::sigstore_bundle::check(&bundle, &sums, &keys.public).unwrap();
    assert!(verified.contains("in the index (BuildKit's attestation manifests"), "{verified}");

    // The five archives, as the cli jobs uploaded them (Windows' runs under Wine in
    // windows.rs).
    let archives = first.artifacts_matching("dist-");
    assert_eq!(archives.len(), 5, "{archives:?}");
    assert!(archives.contains_key(&format!("stigmer-{tag}-windows-amd64.zip")), "{archives:?}");
    let unpacked = tempfile::tempdir().unwrap();
    for (name, archive) in &archives {
        let dir = unpacked.path();
        if name.ends_with(".tar.gz") {
            cmd!(sh, "tar -xzf {archive} -C {dir}").run().unwrap();
        } else {
            zip::ZipArchive::new(std::fs::File::open(archive).unwrap()).unwrap().extract(dir).unwrap();
        }
    }
    let binary = |platform: &str| {
        let name = if platform.starts_with("windows") { "stigmer.exe" } else { "stigmer" };
        unpacked.path().join(format!("stigmer-{tag}-{platform}/{name}"))
    };
    crate::dist::check_binaries(
        &binary,
        &version,
        &project.git(&["rev-parse", &format!("{tag}^{{commit}}")]),
    );
    let amd64_archive = &archives[&format!("stigmer-{tag}-linux-amd64.tar.gz")];
    let commit_time = project.git(&["log", "-1", "--format=%ct", &tag]);
    insta::assert_snapshot!(
        "linux_amd64_listing",
        crate::dist::listing(amd64_archive).replace(&version, "X.Y.Z").replace(&commit_time, "[commit time]")
    );
    let manifest =
        std::fs::read_to_string(first.job("cli (linux-amd64)").workspace.join("dist/manifest.json")).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    for artifact in manifest["artifacts"].as_array_mut().unwrap() {
        // Both change with the code; checksums.txt is checked against the files above.
        artifact["sha256"] = "[sha256]".into();
        artifact["size"] = "[size]".into();
    }
    insta::assert_snapshot!(
        "linux_amd64_manifest",
        serde_json::to_string_pretty(&manifest).unwrap().replace(&version, "X.Y.Z")
    );
    let amd64_binary = binary("linux-amd64");
    let version_text = run_ok(cmd!(sh, "{amd64_binary} --version"));
    assert!(
        version_text.contains(&format!("ghcr.io/stigmer/agent-runner@{digest} ({tag}, pinned)")),
        "{version_text}"
    );

    // "Re-run all jobs": nothing published changes, and the archives are the same bytes.
    let tap_before = tap.git(&["--git-dir", tap.remote().to_str().unwrap(), "show-ref"]);
    let second = rehearsal.run();
    assert_eq!(second.outputs["image"]["digest"], digest, "the rerun published another index");
    assert_eq!(registry_tags(&registry), tags, "the rerun moved a tag");
    assert_eq!(
        tap.git(&["--git-dir", tap.remote().to_str().unwrap(), "show-ref"]),
        tap_before,
        "the rerun committed to the tap"
    );
    assert_eq!(
        std::fs::read_to_string(second.artifacts.join("checksums/checksums.txt")).unwrap(),
        checksums,
        "the rerun built other archives"
    );
    for arch in ["amd64", "arm64"] {
        let log = &second.job(&format!("image-platform ({arch})")).log;
        assert!(
            log.contains("published already"),
            "the rerun of image-platform ({arch}) built again:\n{log}"
        );
    }
    // The rerun's fresh checkouts of the tag take the first run's CLI builds: dist keeps
    // a binary by its inputs, where cargo goes by file times and would link it again.
    for platform in ["darwin-arm64", "darwin-amd64", "linux-amd64", "linux-arm64", "windows-amd64"] {
        let log = &second.job(&format!("cli ({platform})")).log;
        assert!(
            log.contains("built before from the same inputs") && !log.contains("==> building stigmer"),
            "the rerun's cli ({platform}) compiled the CLI again:\n{log}"
        );
    }

    // An archive replaced after its CLI job uploaded it (anything holding the run's token
    // can): the release job refuses it, naming it, before it checksums, signs or
    // publishes anything; nothing published changes.
    let releases_before = github.releases();
    let swapped = rehearsal.run_swapping(Swap { after: "cli", artifact: "dist-linux-amd64" });
    let (job, step, text) = swapped.failed.as_ref().expect("the release job took a swapped archive");
    assert_eq!(
        (job.as_str(), step.as_str()),
        ("release", "The archives, checked against the sha256 each CLI job output"),
        "{text}"
    );
    assert!(text.contains(&format!("stigmer-{tag}-linux-amd64.tar.gz: FAILED")), "{text}");
    assert!(!swapped.xtask_calls.iter().any(|(job, _)| job == "release"), "{:?}", swapped.xtask_calls);
    assert_eq!(registry_tags(&registry), tags, "the swapped run moved a tag");
    assert_eq!(github.releases(), releases_before, "the swapped run changed the release");

    // The released CLI, with no local image and after someone moved its version's tag:
    // it pulls exactly the pinned digest from the registry, with the Docker config's
    // login, and becomes healthy.
    let moved = format!("{repository}:{tag}");
    let other = test_support::base_image::require("amd64");
    let login = registry.docker_config();
    cmd!(sh, "docker tag {other} {moved}").run().unwrap();
    cmd!(sh, "docker --config {login} push --quiet {moved}").quiet().ignore_stdout().run().unwrap();
    cmd!(sh, "docker image rm --no-prune {moved}").quiet().ignore_stdout().run().unwrap();
    let name = test_support::unique_name("stigmer-rehearsed");
    let _local =
        test_support::engine::ImageGuard::new([format!("{name}:local"), format!("{repository}@{digest}")]);
    let home = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let stigmer = binary("linux-amd64");
    let stigmer_cmd = |args: &[&str]| {
        let args = args.to_vec();
        cmd!(sh, "{stigmer} {args...}")
            .env("STIGMER_HOME", home.path())
            .env("STIGMER_AGENT_RUNNER_NAME", &name)
            .env("STIGMER_AGENT_RUNNER_PORT", &port)
            .env("STIGMER_REGISTRY", registry.host())
            .env("DOCKER_CONFIG", &login)
            .env_remove("DOCKER_HOST")
            .env_remove("STIGMER_AGENT_RUNNER_IMAGE")
    };
    let started = crate::run(stigmer_cmd(&["server", "start"]));
    let started_text =
        format!("{}{}", String::from_utf8_lossy(&started.stdout), String::from_utf8_lossy(&started.stderr));
    let stopped = crate::run(stigmer_cmd(&["server", "stop"]));
    let _ = cmd!(sh, "docker rm -f {name}").quiet().ignore_status().ignore_stdout().ignore_stderr().run();
    assert!(started.status.success(), "stigmer server start failed:\n{started_text}");
    assert!(started_text.contains(&format!("pulled {repository}@{digest}")), "{started_text}");
    assert!(stopped.status.success(), "stigmer server stop failed: {stopped:?}");
}

/// Every tag of REGISTRY/agent-runner with the digest it names.
fn registry_tags(registry: &TestRegistry) -> BTreeMap<String, String> {
    let sh = shell();
    let host = registry.host();
    let credentials = registry.skopeo_creds();
    let creds = &credentials;
    let listed = cmd!(sh, "skopeo list-tags --tls-verify=false {creds...} docker://{host}/agent-runner")
        .read()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let mut tags = BTreeMap::new();
    for tag in listed["Tags"].as_array().unwrap() {
        let tag = tag.as_str().unwrap();
        if tag.starts_with("sha256-") {
            continue; // an attachment's tag, not a version
        }
        let reference = format!("docker://{host}/agent-runner:{tag}");
        let digest = format!("sha256:{}", sha256_hex(&registry_manifest(registry, &reference)));
        tags.insert(tag.to_owned(), digest);
    }
    tags
}

/// A manifest's exact bytes (their hash is its digest).
fn registry_manifest(registry: &TestRegistry, reference: &str) -> Vec<u8> {
    let sh = shell();
    let creds = registry.skopeo_creds();
    let raw = cmd!(sh, "skopeo inspect --raw --tls-verify=false {creds...} {reference}").output().unwrap();
    assert!(raw.status.success(), "skopeo inspect {reference}: {}", String::from_utf8_lossy(&raw.stderr));
    raw.stdout
}

/// The parts of a GitHub Actions run that exist here.
struct Rehearsal<'a> {
    origin: PathBuf,
    tap: PathBuf,
    /// Sigstore's stand-in: the key that signs, whose public half verify-release trusts.
    keys: &'a test_support::cosign::KeyPair,
    tag: String,
    /// Workflow-level `env:` values replaced (see the module comment).
    stand_ins: BTreeMap<String, String>,
    /// ghcr.io's stand-in: each job's Docker config is logged in to it.
    registry: &'a TestRegistry,
    /// GitHub's releases, behind the `gh` stand-in.
    github: &'a test_support::github::GitHub,
    /// Where the stand-in's release assets are downloaded from.
    downloads: &'a str,
    /// BuildKit's configuration for the builders setup-buildx-action makes.
    buildkitd_toml: PathBuf,
}

/// An artifact replaced by a third party once the job that uploaded it is done: a byte
/// appended to each of its files.
struct Swap {
    after: &'static str,
    artifact: &'static str,
}

/// One run of every job.
struct WorkflowRun {
    dir: tempfile::TempDir,
    artifacts: PathBuf,
    jobs: Vec<(String, JobRun)>,
    /// Each job's `outputs:`, by job id.
    outputs: BTreeMap<String, BTreeMap<String, String>>,
    /// Every `cargo xtask` call: the job (and matrix entry) and its arguments.
    xtask_calls: Vec<(String, Vec<String>)>,
    /// The jobs that built the release tool (ci/release-tool.sh) rather than download it.
    tool_builds: Vec<String>,
    /// The job and step that failed, and its output: only a run with a swapped artifact
    /// may fail (any other failure fails the test), and it stops there.
    failed: Option<(String, String, String)>,
}

struct JobRun {
    log: String,
    summary: String,
    /// The job's checkout, kept after the job for the test to read.
    workspace: PathBuf,
}

impl WorkflowRun {
    #[track_caller]
    fn job(&self, name: &str) -> &JobRun {
        let found = self.jobs.iter().find(|(job, _)| job == name);
        &found
            .unwrap_or_else(|| {
                panic!("no job {name} ran: {:?}", self.jobs.iter().map(|j| &j.0).collect::<Vec<_>>())
            })
            .1
    }

    /// The files of every artifact whose name starts with `prefix`, by file name.
    fn artifacts_matching(&self, prefix: &str) -> BTreeMap<String, PathBuf> {
        let mut files = BTreeMap::new();
        for artifact in std::fs::read_dir(&self.artifacts).unwrap() {
            let artifact = artifact.unwrap();
            if artifact.file_name().to_string_lossy().starts_with(prefix) {
                for file in std::fs::read_dir(artifact.path()).unwrap() {
                    let file = file.unwrap();
                    files.insert(file.file_name().into_string().unwrap(), file.path());
                }
            }
        }
        files
    }
}

/// What an expression sees in one job.
struct Context<'a> {
    trigger: Trigger,
    matrix: &'a BTreeMap<String, String>,
    /// `runner.os` and `runner.arch` of the job's `runs-on` label, as GitHub names them.
    runner: (&'static str, &'static str),
    /// The outputs of the jobs this one needs, and of no other.
    needs: BTreeMap<String, BTreeMap<String, String>>,
    /// `needs.<job>.result` of those jobs: `success` when it ran (a failure stops the
    /// test), `skipped` when its `if` was false.
    results: BTreeMap<String, &'static str>,
    steps: BTreeMap<String, BTreeMap<String, String>>,
    runner_temp: &'a Path,
    workspace: &'a Path,
}

/// What started a run.
#[derive(Clone, Copy)]
enum Trigger {
    /// The push of the release's tag.
    TagPush,
    /// "Run workflow" on a branch, with the dry-run input on.
    DryRunOn(&'static str),
}

impl Trigger {
    /// GITHUB_EVENT_NAME.
    fn event_name(self) -> &'static str {
        match self {
            Trigger::TagPush => "push",
            Trigger::DryRunOn(_) => "workflow_dispatch",
        }
    }

    /// GITHUB_REF_TYPE.
    fn ref_type(self) -> &'static str {
        match self {
            Trigger::TagPush => "tag",
            Trigger::DryRunOn(_) => "branch",
        }
    }

    /// GITHUB_REF.
    fn git_ref(self, tag: &str) -> String {
        match self {
            Trigger::TagPush => format!("refs/tags/{tag}"),
            Trigger::DryRunOn(branch) => format!("refs/heads/{branch}"),
        }
    }

    /// GITHUB_REF_NAME, what a run of `tag`'s release checks out.
    fn ref_name(self, tag: &str) -> &str {
        match self {
            Trigger::TagPush => tag,
            Trigger::DryRunOn(branch) => branch,
        }
    }
}

impl Rehearsal<'_> {
    fn run(&self) -> WorkflowRun {
        self.run_ok(Trigger::TagPush)
    }

    fn run_ok(&self, trigger: Trigger) -> WorkflowRun {
        let run = self.run_with(trigger, None);
        if let Some((job, step, text)) = &run.failed {
            panic!("{job}: {step} failed:\n{text}");
        }
        run
    }

    fn run_swapping(&self, swap: Swap) -> WorkflowRun {
        self.run_with(Trigger::TagPush, Some(swap))
    }

    fn run_with(&self, trigger: Trigger, swap: Option<Swap>) -> WorkflowRun {
        let reference = trigger.ref_name(&self.tag);
        let dir = tempfile::Builder::new().prefix("stigmer-rehearsal-").tempdir().unwrap();
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        // Every job checks out to this path, as on GitHub's runners: the CLI builds'
        // remapped paths, and so cargo's reuse, depend on it.
        let runner = test_support::target_dir().join("rehearsal");
        let workspace = runner.join("work/stigmer/stigmer");
        let cargo_target = runner.join("cargo-target");
        put_the_suites_cross_linker_in(&tool_cache());
        // The CLI jobs' release builds share the suite's (the dependencies of five targets).
        test_support::share_dist_builds(&cargo_target);
        let shim = dir.path().join("bin");
        let calls = dir.path().join("xtask-calls");
        let tool_builds = dir.path().join("tool-builds");
        write_cargo_shim(&shim);

        let workflow_text = {
            clone(&self.origin, reference, &workspace, 1);
            std::fs::read_to_string(workspace.join(".github/workflows/release.yml")).unwrap()
        };
        let workflow: Value = serde_yaml::from_str(&workflow_text).unwrap();
        for (from, _, why) in REWRITES {
            assert!(
                workflow_text.contains(from),
                "release.yml has no `{from}` to rewrite for {why}: update REWRITES"
            );
        }
        let mut workflow_env = string_map(&workflow["env"]);
        for (name, value) in &self.stand_ins {
            assert!(
                workflow_env.contains_key(name),
                "release.yml's env has no {name} for the rehearsal to replace"
            );
            workflow_env.insert(name.clone(), value.clone());
        }

        let mut run = WorkflowRun {
            dir,
            artifacts: artifacts.clone(),
            jobs: Vec::new(),
            outputs: BTreeMap::new(),
            xtask_calls: Vec::new(),
            tool_builds: Vec::new(),
            failed: None,
        };
        let jobs = workflow["jobs"].as_mapping().expect("release.yml has jobs");
        let mut ran = std::collections::BTreeSet::new();
        'jobs: for (job_id, job) in in_needs_order(jobs) {
            check_keys(job, &job_id, JOB_KEYS);
            let needs = as_list(&job["needs"]);
            let no_matrix = vec![BTreeMap::new()];
            let matrix = match job["strategy"]["matrix"]["include"].as_sequence() {
                Some(entries) => entries.iter().map(string_map).collect(),
                None => no_matrix,
            };
            for entry in &matrix {
                let runner_temp = runner.join("temp");
                let _ = std::fs::remove_dir_all(&runner_temp);
                std::fs::create_dir_all(&runner_temp).unwrap();
                let mut context = Context {
                    trigger,
                    matrix: entry,
                    runner: ("", ""),
                    needs: needs.iter().map(|n| (n.clone(), run.outputs[n].clone())).collect(),
                    results: needs
                        .iter()
                        .map(|n| (n.clone(), if ran.contains(n) { "success" } else { "skipped" }))
                        .collect(),
                    steps: BTreeMap::new(),
                    runner_temp: &runner_temp,
                    workspace: &workspace,
                };
                context.runner =
                    runner_of(&interpolate(job["runs-on"].as_str().expect("a job has runs-on"), &context));
                let name = match entry.values().next() {
                    Some(first) => format!("{job_id} ({first})"),
                    None => job_id.clone(),
                };
                if let Some(condition) = job["if"].as_str() {
                    if !truthy(condition, &context) {
                        continue;
                    }
                }
                ran.insert(job_id.clone());
                let started = std::time::Instant::now();
                let _ = std::fs::remove_dir_all(&workspace);
                std::fs::create_dir_all(&workspace).unwrap();
                // A fresh runner: its own Docker config (logged in to the registry), no builder.
                let buildx = BuildxEnv::new(self.registry);
                let mut builders = Vec::new();
                let mut env = workflow_env.clone();
                env.extend(self.runner_env(
                    &name,
                    trigger,
                    &runner_temp,
                    &workspace,
                    &shim,
                    &calls,
                    &cargo_target,
                ));
                env.insert("REHEARSAL_TOOL_BUILDS".into(), tool_builds.display().to_string());
                env.insert("RUNNER_OS".into(), context.runner.0.to_owned());
                env.insert("RUNNER_ARCH".into(), context.runner.1.to_owned());
                env.insert("DOCKER_HOST".into(), buildx.docker_host().to_owned());
                env.insert("DOCKER_CONFIG".into(), buildx.docker_config().display().to_string());
                env.extend(evaluated_map(&job["env"], &context));
                let mut log = String::new();
                let summary = runner_temp.join("step-summary.md");
                std::fs::write(&summary, "").unwrap();
                for (index, step) in job["steps"].as_sequence().expect("a job has steps").iter().enumerate() {
                    let step_name =
                        step["name"].as_str().or(step["uses"].as_str()).unwrap_or("a step").to_owned();
                    check_keys(step, &format!("{name}: {step_name}"), STEP_KEYS);
                    if let Some(condition) = step["if"].as_str() {
                        if !truthy(condition, &context) {
                            log.push_str(&format!("--- skipped: {step_name}\n"));
                            continue;
                        }
                    }
                    let mut step_env = env.clone();
                    step_env.extend(evaluated_map(&step["env"], &context));
                    let with = evaluated_map(&step["with"], &context);
                    let outputs = if let Some(action) = step["uses"].as_str() {
                        builders.extend(self.action(action, &with, &context, &artifacts, &name, &buildx));
                        BTreeMap::new()
                    } else {
                        let script = step["run"].as_str().expect("a step has uses or run");
                        let script = REWRITES
                            .iter()
                            .fold(script.to_owned(), |script, (from, to, _)| script.replace(from, to));
                        let output_file = runner_temp.join(format!("output-{index}"));
                        let env_file = runner_temp.join(format!("env-{index}"));
                        let path_file = runner_temp.join(format!("path-{index}"));
                        step_env.insert("GITHUB_OUTPUT".into(), output_file.display().to_string());
                        step_env.insert("GITHUB_ENV".into(), env_file.display().to_string());
                        step_env.insert("GITHUB_PATH".into(), path_file.display().to_string());
                        step_env.insert("GITHUB_STEP_SUMMARY".into(), summary.display().to_string());
                        let text = match run_script(&script, &step_env, &workspace) {
                            Ok(text) => text,
                            Err(text) => {
                                let text = format!("{log}--- {step_name}\n{text}");
                                run.failed = Some((name, step_name, text));
                                break 'jobs;
                            }
                        };
                        log.push_str(&format!("--- {step_name}\n{text}"));
                        // GITHUB_ENV: set for the job's later steps; GITHUB_PATH: a
                        // directory a line, put first on their PATH.
                        env.extend(read_outputs(&env_file));
                        for dir in std::fs::read_to_string(&path_file).unwrap_or_default().lines().rev() {
                            let path = env.get("PATH").cloned().unwrap_or_default();
                            env.insert("PATH".into(), format!("{dir}:{path}"));
                        }
                        read_outputs(&output_file)
                    };
                    if let Some(id) = step["id"].as_str() {
                        context.steps.insert(id.to_owned(), outputs);
                    }
                }
                // A matrix's legs combine their outputs, and one a leg left empty is not
                // set (GitHub's docs, "Using job outputs in a matrix job").
                let outputs = evaluated_map(&job["outputs"], &context);
                let set = outputs.into_iter().filter(|(_, value)| !value.is_empty());
                run.outputs.entry(job_id.clone()).or_default().extend(set);
                let kept = run.dir.path().join("jobs").join(name.replace([' ', '(', ')'], "_"));
                std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
                move_dir(&workspace, &kept);
                let summary = std::fs::read_to_string(&summary).unwrap();
                // The builders go before the Docker config they live in.
                eprintln!("rehearsal: job {name} took {:.1} s", started.elapsed().as_secs_f64());
                run.jobs.push((name, JobRun { log, summary, workspace: kept }));
            }
            run.outputs.entry(job_id.clone()).or_default();
            if let Some(swap) = swap.as_ref().filter(|swap| swap.after == job_id) {
                for file in std::fs::read_dir(artifacts.join(swap.artifact)).unwrap() {
                    let mut file =
                        std::fs::OpenOptions::new().append(true).open(file.unwrap().path()).unwrap();
                    std::io::Write::write_all(&mut file, b"\0").unwrap();
                }
            }
        }
        run.tool_builds =
            std::fs::read_to_string(&tool_builds).unwrap_or_default().lines().map(str::to_owned).collect();
        if let Ok(text) = std::fs::read_to_string(&calls) {
            for line in text.lines() {
                let mut fields = line.split('\t').map(str::to_owned);
                let job = fields.next().unwrap();
                run.xtask_calls.push((job, fields.filter(|f| !f.is_empty()).collect()));
            }
        }
        run
    }

    /// The variables a runner sets, this machine's, and the stand-ins' (module comment).
    #[allow(clippy::too_many_arguments)]
    fn runner_env(
        &self,
        job: &str,
        trigger: Trigger,
        runner_temp: &Path,
        workspace: &Path,
        shim: &Path,
        calls: &Path,
        cargo_target: &Path,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for name in ["HOME", "USER", "LANG", "TMPDIR", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"] {
            if let Ok(value) = std::env::var(name) {
                env.insert(name.to_owned(), value);
            }
        }
        // The release profile as the suite builds the CLI (`cargo xtask test` sets it
        // unoptimised): the CLI jobs build what every other test builds.
        env.extend(std::env::vars().filter(|(name, _)| name.starts_with("CARGO_PROFILE_")));
        let mut github = self.github.env();
        let path = github.iter().find(|(name, _)| *name == "PATH").map(|(_, path)| path.clone()).unwrap();
        github.retain(|(name, _)| *name != "PATH");
        env.extend(github.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let set = [
            ("PATH", format!("{}:{path}", shim.display())),
            ("CI", "true".to_owned()),
            ("GITHUB_ACTIONS", "true".to_owned()),
            ("GITHUB_EVENT_NAME", trigger.event_name().to_owned()),
            ("GITHUB_REF", trigger.git_ref(&self.tag)),
            ("GITHUB_REF_TYPE", trigger.ref_type().to_owned()),
            ("GITHUB_REF_NAME", trigger.ref_name(&self.tag).to_owned()),
            ("GITHUB_REPOSITORY", "stigmer/stigmer".to_owned()),
            ("GITHUB_ACTOR", "stigmer-release".to_owned()),
            ("GITHUB_WORKSPACE", workspace.display().to_string()),
            ("RUNNER_TEMP", runner_temp.display().to_string()),
            // Kept between jobs and runs, as a reused runner's is (a GitHub-hosted
            // runner's starts empty): the CLI jobs install zig there once, not each time.
            ("RUNNER_TOOL_CACHE", tool_cache().display().to_string()),
            ("CARGO_TARGET_DIR", cargo_target.display().to_string()),
            ("REHEARSAL_JOB", job.to_owned()),
            ("REHEARSAL_CALLS", calls.display().to_string()),
            ("REHEARSAL_XTASK", XTASK.to_owned()),
            ("REHEARSAL_COSIGN_KEY", self.keys.key.display().to_string()),
            ("REHEARSAL_COSIGN_PUB", self.keys.public.display().to_string()),
            ("COSIGN_PASSWORD", test_support::cosign::PASSWORD.to_owned()),
            ("REHEARSAL_TAP", self.tap.display().to_string()),
            ("REHEARSAL_DOWNLOADS", self.downloads.to_owned()),
            ("REHEARSAL_ORIGIN", self.origin.display().to_string()),
        ];
        env.extend(set.into_iter().map(|(k, v)| (k.to_owned(), v)));
        env
    }

    /// What each action the workflow uses does on a runner, as far as it matters here;
    /// the builder setup-buildx-action makes, which lives as long as the job.
    fn action<'b>(
        &self,
        action: &str,
        with: &BTreeMap<String, String>,
        context: &Context<'_>,
        artifacts: &Path,
        job: &str,
        buildx: &'b BuildxEnv,
    ) -> Option<ContainerBuilder<'b>> {
        let (name, _version) = action.split_once('@').unwrap_or((action, ""));
        let allowed = |keys: &[&str]| {
            for key in with.keys() {
                assert!(keys.contains(&key.as_str()), "{job}: the rehearsal does not know `{key}` of {name}");
            }
        };
        match name {
            "actions/checkout" => {
                allowed(&["persist-credentials", "fetch-depth", "repository", "path", "token"]);
                let depth = with.get("fetch-depth").map_or(1, |d| d.parse().unwrap());
                match with.get("repository").map(String::as_str) {
                    None => {
                        clone(&self.origin, context.trigger.ref_name(&self.tag), context.workspace, depth)
                    }
                    Some("stigmer/homebrew-tap") => {
                        let path =
                            context.workspace.join(with.get("path").expect("the tap's checkout has a path"));
                        clone(&self.tap, "main", &path, depth);
                    }
                    Some(other) => panic!("{job}: the rehearsal has no stand-in for the repository {other}"),
                }
                if with.get("persist-credentials").map(String::as_str) == Some("false") {
                    // No token is left behind: a push from this checkout must fail, as
                    // it would on GitHub.
                    let work = context.workspace;
                    let sh = shell();
                    cmd!(sh, "git -C {work} remote set-url --push origin /no-credentials-were-persisted")
                        .run()
                        .unwrap();
                }
            }
            "docker/setup-buildx-action" => {
                allowed(&["version", "driver-opts", "cache-binary"]);
                // Pinned on GitHub; here the machine's buildx and the BuildKit image
                // ci/setup.sh builds stand in for them (moby/buildkit cannot be pulled,
                // nor a buildx release downloaded), so both are checked for a pin and
                // otherwise ignored. workflows.rs checks the versions ARCHITECTURE.md names.
                if let Some(version) = with.get("version") {
                    assert!(
                        version.starts_with('v') && version[1..].split('.').all(|n| n.parse::<u32>().is_ok()),
                        "{job}: setup-buildx-action's version {version} is not a release"
                    );
                }
                for option in with.get("driver-opts").map_or("", String::as_str).lines() {
                    let option = option.trim();
                    let pinned = option
                        .strip_prefix("image=")
                        .and_then(|image| image.split_once("@sha256:"))
                        .is_some_and(|(_, digest)| digest.len() == 64);
                    assert!(
                        pinned || option.is_empty(),
                        "{job}: the rehearsal does not know the driver option {option} of {name}"
                    );
                }
                let name = test_support::unique_name("rehearsal-builder");
                return Some(buildx.container_builder(&name, &self.buildkitd_toml));
            }
            "sigstore/cosign-installer" => {
                allowed(&["cosign-release"]);
                let sh = shell();
                let version = cmd!(sh, "cosign version").read().expect("cosign: run `bash ci/setup.sh`");
                // Debian's build names no release (`GitVersion: devel`): it is trixie's 2.5.0.
                let wanted = with["cosign-release"].trim_start_matches('v');
                assert!(
                    version.contains(wanted) || version.contains("GitVersion:    devel"),
                    "{job} installs cosign {wanted}; this machine has:\n{version}"
                );
            }
            // GitHub's attestation store is not here: what it would attest must exist.
            "actions/attest" => {
                allowed(&["subject-path"]);
                for pattern in with["subject-path"].lines().filter(|line| !line.trim().is_empty()) {
                    let found = glob(context.workspace, pattern.trim());
                    assert!(!found.is_empty(), "{job}: nothing matches the attestation subject {pattern}");
                }
            }
            "actions/upload-artifact" => {
                allowed(&["name", "path", "if-no-files-found"]);
                let artifact = artifacts.join(&with["name"]);
                assert!(!artifact.exists(), "{job}: the artifact {} was uploaded already", with["name"]);
                // One pattern a line, as GitHub takes them; the files land flat, as
                // they do here under one common directory.
                let files: Vec<PathBuf> = with["path"]
                    .lines()
                    .filter(|line| !line.trim().is_empty())
                    .flat_map(|pattern| glob(context.workspace, pattern.trim()))
                    .collect();
                assert!(!files.is_empty(), "{job}: no files match {} for {}", with["path"], with["name"]);
                std::fs::create_dir_all(&artifact).unwrap();
                for file in files {
                    std::fs::copy(&file, artifact.join(file.file_name().unwrap())).unwrap();
                }
            }
            "actions/download-artifact" => {
                allowed(&["name", "pattern", "merge-multiple", "path"]);
                let into = context.workspace.join(&with["path"]);
                std::fs::create_dir_all(&into).unwrap();
                let chosen: Vec<PathBuf> = match (with.get("name"), with.get("pattern")) {
                    (Some(name), None) => vec![artifacts.join(name)],
                    (None, Some(pattern)) => {
                        assert_eq!(with.get("merge-multiple").map(String::as_str), Some("true"), "{job}");
                        glob(artifacts, pattern)
                    }
                    _ => panic!("{job}: download-artifact needs a name or a pattern"),
                };
                assert!(
                    chosen.iter().all(|a| a.is_dir()) && !chosen.is_empty(),
                    "{job}: no artifact {with:?}"
                );
                for artifact in chosen {
                    for file in std::fs::read_dir(artifact).unwrap() {
                        let file = file.unwrap();
                        let to = into.join(file.file_name());
                        std::fs::copy(file.path(), &to).unwrap();
                        // An artifact is a zip: it does not keep the executable bit.
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
                    }
                }
            }
            other => panic!("{job}: the rehearsal does not know the action {other}: teach it what it does"),
        }
        None
    }
}

const JOB_KEYS: &[&str] = &[
    "name",
    "needs",
    "if",
    "runs-on",
    "timeout-minutes",
    "permissions",
    "outputs",
    "strategy",
    "env",
    "steps",
    "environment",
];
const STEP_KEYS: &[&str] = &["name", "id", "uses", "with", "run", "env", "if"];

#[track_caller]
fn check_keys(value: &Value, place: &str, known: &[&str]) {
    for key in value.as_mapping().unwrap().keys() {
        let key = key.as_str().unwrap();
        assert!(known.contains(&key), "{place}: the rehearsal does not know `{key}`: teach it what it means");
    }
}

/// Jobs in an order where every job comes after those it needs (the YAML's order among
/// the ready ones).
fn in_needs_order(jobs: &serde_yaml::Mapping) -> Vec<(String, &Value)> {
    let mut done: Vec<String> = Vec::new();
    let mut ordered = Vec::new();
    while ordered.len() < jobs.len() {
        let ready = jobs.iter().find(|(id, job)| {
            let id = id.as_str().unwrap();
            !done.iter().any(|d| d == id) && as_list(&job["needs"]).iter().all(|n| done.contains(n))
        });
        let (id, job) = ready.expect("release.yml's needs form a cycle");
        let id = id.as_str().unwrap().to_owned();
        done.push(id.clone());
        ordered.push((id, job));
    }
    ordered
}

fn as_list(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::String(one) => vec![one.clone()],
        Value::Sequence(many) => many.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        other => panic!("not a list: {other:?}"),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    match value.as_mapping() {
        Some(map) => map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect(),
        None => BTreeMap::new(),
    }
}

fn evaluated_map(value: &Value, context: &Context<'_>) -> BTreeMap<String, String> {
    string_map(value).into_iter().map(|(k, v)| (k, interpolate(&v, context))).collect()
}

/// `${{ ... }}` replaced by its value.
fn interpolate(text: &str, context: &Context<'_>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").map(|e| start + e).unwrap_or_else(|| panic!("unclosed in {text}"));
        out.push_str(&value_of(rest[start + 3..end].trim(), context));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The expressions release.yml uses: a context's value, or `a == 'b'`, `a != 'b'`,
/// `!cancelled()` (nothing is cancelled here), and `||` of `&&` of those. Anything else
/// fails: teach it here first.
fn value_of(expression: &str, context: &Context<'_>) -> String {
    let parts: Vec<&str> = expression.split('.').collect();
    match parts[..] {
        ["matrix", name] => context.matrix.get(name).cloned().unwrap_or_else(|| panic!("no matrix.{name}")),
        ["needs", job, "outputs", name] => {
            let outputs =
                context.needs.get(job).unwrap_or_else(|| panic!("needs.{job} is not in this job's needs"));
            outputs.get(name).cloned().unwrap_or_default()
        }
        ["needs", job, "result"] => context
            .results
            .get(job)
            .unwrap_or_else(|| panic!("needs.{job} is not in this job's needs"))
            .to_string(),
        ["steps", id, "outputs", name] => {
            context.steps.get(id).and_then(|o| o.get(name)).cloned().unwrap_or_default()
        }
        // A tag push has no inputs; a dispatch has the one release.yml declares.
        ["inputs", "dry-run"] => match context.trigger {
            Trigger::TagPush => String::new(),
            Trigger::DryRunOn(_) => "true".to_owned(),
        },
        // Secrets are not needed by name here (their stand-ins are the Docker config and
        // the tap's bare repository).
        ["secrets", _] => String::new(),
        ["runner", "temp"] => context.runner_temp.display().to_string(),
        ["runner", "os"] => context.runner.0.to_owned(),
        ["runner", "arch"] => context.runner.1.to_owned(),
        ["github", "repository"] => "stigmer/stigmer".to_owned(),
        ["github", "ref_type"] => context.trigger.ref_type().to_owned(),
        _ => panic!("the rehearsal cannot evaluate `{expression}`: teach it"),
    }
}

fn truthy(condition: &str, context: &Context<'_>) -> bool {
    let condition = condition.trim().trim_start_matches("${{").trim_end_matches("}}");
    condition.split("||").any(|alternative| {
        alternative.split("&&").all(|term| {
            let term = term.trim();
            if term == "!cancelled()" {
                return true;
            }
            let (left, equal, right) = match (term.split_once("!="), term.split_once("==")) {
                (Some((l, r)), _) => (l, false, r),
                (None, Some((l, r))) => (l, true, r),
                (None, None) => return !value_of(term, context).is_empty(),
            };
            let right = right.trim();
            let literal = right
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .unwrap_or_else(|| panic!("the rehearsal compares with quoted literals only: {term}"));
            (value_of(left.trim(), context) == literal) == equal
        })
    })
}

/// `runner.os` and `runner.arch` of a GitHub-hosted runner label.
fn runner_of(label: &str) -> (&'static str, &'static str) {
    match label {
        "ubuntu-24.04" => ("Linux", "X64"),
        "ubuntu-24.04-arm" => ("Linux", "ARM64"),
        "macos-15" => ("macOS", "ARM64"),
        "macos-15-intel" => ("macOS", "X64"),
        other => panic!("the rehearsal does not know the runner {other}: teach runner_of its os and arch"),
    }
}

/// A `run:` step as a runner runs it: `bash --noprofile --norc -eo pipefail`, in the
/// workspace, with exactly the job's environment; its output, Err when it failed.
fn run_script(script: &str, env: &BTreeMap<String, String>, workspace: &Path) -> Result<String, String> {
    let output = Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(workspace)
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!("{}:\n{script}\n---\n{text}", output.status))
    }
}

fn read_outputs(file: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .map(|line| {
            assert!(!line.contains("<<"), "the rehearsal reads name=value outputs only: {line}");
            let (name, value) = line.split_once('=').unwrap_or_else(|| panic!("not an output: {line}"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// A fresh clone of `reference` into `into`: `depth` 0 is the whole history, as
/// actions/checkout's `fetch-depth`.
fn clone(origin: &Path, reference: &str, into: &Path, depth: u32) {
    let sh = shell();
    let _ = std::fs::remove_dir_all(into);
    let url = format!("file://{}", origin.display());
    let depth = if depth == 0 { Vec::new() } else { vec!["--depth".to_owned(), depth.to_string()] };
    cmd!(sh, "git -c advice.detachedHead=false clone --quiet {depth...} --branch {reference} {url} {into}")
        .quiet()
        .run()
        .unwrap();
}

/// Files or directories matching a shell pattern below `dir`.
fn glob(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let sh = shell();
    sh.change_dir(dir);
    let script = format!("printf '%s\\n' {pattern}");
    let listed = cmd!(sh, "bash -O nullglob -c {script}").read().unwrap();
    listed.lines().filter(|l| !l.is_empty()).map(|l| dir.join(l)).collect()
}

fn move_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::rename(from, to)
        .unwrap_or_else(|err| panic!("moving {} to {}: {err}", from.display(), to.display()));
}

fn which(program: &str) -> PathBuf {
    let sh = shell();
    PathBuf::from(cmd!(sh, "which {program}").read().unwrap_or_else(|_| panic!("{program} is not on PATH")))
}

/// `cargo` on the jobs' PATH, found once here: `cargo xtask ...` runs this test's xtask
/// on the job's checkout (and is logged); `cargo build --locked --package xtask` (what
/// ci/release-tool.sh runs where no built tool was handed down) is logged and, in place
/// of a second build of the same sources, puts `xtask-wrapper` where cargo would put
/// the binary; anything else is the real cargo. The wrapper runs this test's xtask and
/// logs each call as `cargo xtask` does (the project root comes from GITHUB_ENV).
fn write_cargo_shim(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let log_call = "printf '%s\\t' \"$REHEARSAL_JOB\" \"$@\" >>\"$REHEARSAL_CALLS\"\n\
                    printf '\\n' >>\"$REHEARSAL_CALLS\"\n";
    let wrapper = dir.join("xtask-wrapper");
    let shim = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = xtask ]; then\n\
         shift\n\
         {log_call}\
         XTASK_PROJECT_ROOT=\"$GITHUB_WORKSPACE\" exec \"$REHEARSAL_XTASK\" \"$@\"\n\
         fi\n\
         if [ \"$*\" = 'build --locked --package xtask' ]; then\n\
         printf '%s\\n' \"$REHEARSAL_JOB\" >>\"$REHEARSAL_TOOL_BUILDS\"\n\
         mkdir -p \"${{CARGO_TARGET_DIR:-target}}/debug\"\n\
         exec cp {wrapper} \"${{CARGO_TARGET_DIR:-target}}/debug/xtask\"\n\
         fi\n\
         exec {cargo} \"$@\"\n",
        wrapper = wrapper.display(),
        cargo = which("cargo").display()
    );
    let wrapper_script = format!("#!/bin/sh\n{log_call}exec \"$REHEARSAL_XTASK\" \"$@\"\n");
    use std::os::unix::fs::PermissionsExt;
    for (path, script) in [(dir.join("cargo"), shim), (wrapper, wrapper_script)] {
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// The runners' tool cache, kept between jobs and runs.
fn tool_cache() -> PathBuf {
    test_support::target_dir().join("rehearsal/tool-cache")
}

/// Puts in `tool_cache` the cross linker release.yml's CLI jobs install (the directory
/// its step names, with the step's `installed` mark) as this machine's own pip install
/// of the same pins: the `cargo-zigbuild` and `python3` of ci/setup.sh's. cargo-zigbuild
/// names the linker wrappers it hands cargo by its own path and its Python's, and cargo
/// rebuilds every dependency of a target whose linker changed: with a venv of their own,
/// the CLI jobs and the rest of the suite rebuilt the four cross targets' dependencies
/// in turn in the shared target directory, about 30 s a target each time (cargo's
/// fingerprint log: `ConfigSettingsChanged`).
fn put_the_suites_cross_linker_in(tool_cache: &Path) {
    let release = std::fs::read_to_string(project_root().join(".github/workflows/release.yml")).unwrap();
    let name = release
        .lines()
        .find_map(|line| line.trim().strip_prefix("zig=\"$RUNNER_TOOL_CACHE/")?.strip_suffix('"'))
        .expect("release.yml's cross-linker step names its directory in the tool cache");
    let sh = shell();
    let scripts =
        cmd!(sh, "python3 -c 'import sysconfig; print(sysconfig.get_path(\"scripts\"))'").read().unwrap();
    let (cargo_zigbuild, python) =
        (Path::new(&scripts).join("cargo-zigbuild"), Path::new(&scripts).join("python3"));
    assert!(cargo_zigbuild.exists(), "no cargo-zigbuild in {scripts}: run `bash ci/setup.sh`");
    let install = tool_cache.join(name);
    let bin = install.join("bin");
    if std::fs::read_link(bin.join("cargo-zigbuild")).ok().as_deref() != Some(cargo_zigbuild.as_path()) {
        let _ = std::fs::remove_dir_all(&install);
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(&cargo_zigbuild, bin.join("cargo-zigbuild")).unwrap();
        std::os::unix::fs::symlink(&python, bin.join("python3")).unwrap();
        std::fs::write(install.join("installed"), "").unwrap();
    }
}
