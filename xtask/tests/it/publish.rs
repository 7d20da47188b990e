//! `cargo xtask image --push` with the engine builder against a real registry: tags
//! and aliases, zero-byte re-pushes, pre-releases, credentials, and a registry that
//! dies half-way. The Dockerfile here is tiny (`FROM` the test base, one `COPY`) so
//! that these tests exercise publishing, not pip.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::{
    base_image, buildx::BuildxEnv, engine::ImageGuard, git::TestRepo, registry::TestRegistry, shell,
};
use xshell::{cmd, Shell};

use crate::{run_err, run_ok, XTASK};

pub(crate) struct Fixture {
    pub(crate) registry: TestRegistry,
    pub(crate) base: String,
    pub(crate) context: tempfile::TempDir,
    /// The project the pushes run in: each version is a commit with its tag on
    /// `origin`, as `cargo xtask release` makes it, and a version tag in the registry
    /// counts as released only where git tags its commit.
    pub(crate) repo: TestRepo,
    _base_tag: ImageGuard,
}

impl Fixture {
    pub(crate) fn new(registry: TestRegistry) -> Fixture {
        let repo = TestRepo::new();
        repo.write("README.md", "the fixture's project\n");
        repo.commit_all("start");
        Fixture::in_project(registry, repo)
    }

    /// A fixture whose pushes and checks run in `repo` (e.g. a copy of this checkout).
    pub(crate) fn in_project(registry: TestRegistry, repo: TestRepo) -> Fixture {
        let base = base_image::push_index(&registry);
        let context = tempfile::tempdir().unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            // The label, as agent-runner/Dockerfile sets it: a publish checks every
            // platform's image was built from the commit it releases.
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nARG REVISION\nLABEL org.opencontainers.image.revision=${REVISION}\n\
             COPY app.txt /app.txt\n",
        )
        .unwrap();
        let fixture = Fixture { registry, _base_tag: ImageGuard::new([base.clone()]), base, context, repo };
        fixture.set_app("first");
        fixture
    }

    /// Checks out the commit of `version`'s tag, made now (a commit and its tag, pushed)
    /// for a version not released before; returns the project root a job of it runs in.
    pub(crate) fn at_release(&self, version: &str) -> &std::path::Path {
        let tag = format!("v{}", version.trim_start_matches('v'));
        let exists = self.repo.git(&["tag", "--list", &tag]);
        if exists.trim().is_empty() {
            self.repo.git(&["switch", "--quiet", "--detach", "main"]);
            self.repo.git(&["commit", "--quiet", "--allow-empty", "-m", &format!("release: {tag}")]);
            self.repo.git(&["tag", &tag]);
            self.repo.git(&["push", "--quiet", "origin", &format!("refs/tags/{tag}")]);
            self.repo.git(&["branch", "--quiet", "--force", "main", "HEAD"]);
        }
        self.repo.git(&["switch", "--quiet", "--detach", &tag]);
        self.repo.work()
    }

    pub(crate) fn set_app(&self, content: &str) {
        std::fs::write(self.context.path().join("app.txt"), content).unwrap();
    }

    pub(crate) fn push<'a>(&self, sh: &'a Shell, version: &str) -> xshell::Cmd<'a> {
        let (registry, base, context) = (self.registry.host(), &self.base, self.context.path());
        cmd!(
            sh,
            "{XTASK} image --push --builder engine --registry {registry} --version {version} --base-image {base} --context {context}"
        )
        .env("DOCKER_CONFIG", self.registry.docker_config())
        .env("XTASK_PROJECT_ROOT", self.at_release(version))
        .env("CARGO_TARGET_DIR", test_support::target_dir())
    }

    /// `--by-digest` for each platform, as the per-platform jobs run it; their digests.
    fn push_by_digest(&self, sh: &Shell, version: &str) -> Vec<String> {
        let (registry, base, context) = (self.registry.host(), &self.base, self.context.path());
        let mut digests = Vec::new();
        for platform in ["linux/amd64", "linux/arm64"] {
            let output = crate::run(cmd!(
                sh,
                "{XTASK} image --push --by-digest --platform {platform} --builder engine --registry {registry} --version {version} --base-image {base} --context {context}"
            )
            .env("XTASK_PROJECT_ROOT", self.at_release(version))
            .env("CARGO_TARGET_DIR", test_support::target_dir()));
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            digests.push(String::from_utf8(output.stdout).unwrap().trim().to_owned());
        }
        digests
    }

    fn push_with_plan<'a>(&self, sh: &'a Shell, plan: &std::path::Path) -> xshell::Cmd<'a> {
        let (base, context) = (&self.base, self.context.path());
        cmd!(
            sh,
            "{XTASK} image --push --builder engine --plan {plan} --base-image {base} --context {context}"
        )
        .env("DOCKER_CONFIG", self.registry.docker_config())
        .env("XTASK_PROJECT_ROOT", self.at_release(&planned_tag(plan)))
        .env("CARGO_TARGET_DIR", test_support::target_dir())
    }

    pub(crate) fn repository(&self) -> String {
        self.registry.repository("agent-runner")
    }

    /// The raw bytes skopeo reads for a tag, or None when the tag does not exist.
    fn raw(&self, tag: &str) -> Option<Vec<u8>> {
        raw_in(&self.registry, &self.repository(), tag)
    }
}

/// The version tag a plan file releases.
fn planned_tag(plan: &std::path::Path) -> String {
    let plan: Value = serde_json::from_str(&std::fs::read_to_string(plan).unwrap()).unwrap();
    plan["tag"].as_str().unwrap().to_owned()
}

/// What `tag` names in the fixture's repository, if it exists.
pub(crate) fn tag_digest(fixture: &Fixture, tag: &str) -> Option<String> {
    fixture.raw(tag).map(|bytes| digest_of(&bytes))
}

fn digest_of(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The index digest a publish reports in its `==> published REPO@DIGEST` line.
pub(crate) fn published_digest(output: &str) -> String {
    let line = output.lines().find(|l| l.starts_with("==> published ")).unwrap_or_else(|| panic!("{output}"));
    line.rsplit('@').next().unwrap().to_owned()
}

#[test]
fn a_release_is_verified_then_aliased_and_a_re_push_uploads_nothing() {
    let fixture = Fixture::new(TestRegistry::start_with_auth());
    let sh = shell();
    let output = run_ok(fixture.push(&sh, "v1.2.3"));
    let digest = published_digest(&output);
    // Verification ran before the aliases moved.
    let verified = output.find("==> verifying").unwrap();
    assert!(verified < output.find("==> published").unwrap(), "{output}");

    let index = fixture.raw("v1.2.3").expect("v1.2.3 exists");
    assert_eq!(digest_of(&index), digest, "skopeo and xtask disagree on the index digest");
    let index_json: Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(index_json["mediaType"], "application/vnd.oci.image.index.v1+json");
    let arches: Vec<&str> = index_json["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    for alias in ["latest", "v1.2", "v1"] {
        assert_eq!(fixture.raw(alias).as_deref(), Some(&index[..]), "{alias} is not a byte copy of v1.2.3");
    }
    let creds = &fixture.registry.skopeo_creds();
    let remote = format!("docker://{}:v1.2.3", fixture.repository());
    let arm64 = cmd!(sh, "skopeo inspect --override-arch arm64 --tls-verify=false {creds...} {remote}")
        .read()
        .unwrap();
    let arm64: Value = serde_json::from_str(&arm64).unwrap();
    assert_eq!(arm64["Architecture"], "arm64");
    // skopeo's Digest is the index's; read the arm64 entry's own config instead.
    let entry = index_json["manifests"][1]["digest"].as_str().unwrap();
    let arm64_manifest = format!("docker://{}@{entry}", fixture.repository());
    let config = cmd!(sh, "skopeo inspect --config --raw --tls-verify=false {creds...} {arm64_manifest}")
        .read()
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&config).unwrap()["architecture"], "arm64");

    let uploads_before = fixture.registry.blob_uploads();
    let again = run_ok(fixture.push(&sh, "v1.2.3"));
    assert!(again.contains("blob bytes uploaded 0"), "{again}");
    assert_eq!(fixture.registry.blob_uploads(), uploads_before, "the registry saw new blob uploads");
    assert_eq!(published_digest(&again), digest);
}

/// `--cosign-key`: the verified index is signed by digest after verification and
/// before any pointer moves; a signature that fails then (cosign cannot store it:
/// `COSIGN_REPOSITORY` names a registry that is down) moves nothing, and the rerun signs
/// and moves; a key cosign cannot open is refused before anything is pushed.
#[test]
fn a_signed_release_is_signed_after_verification_and_a_failed_signature_moves_no_pointer() {
    let fixture = Fixture::new(TestRegistry::start_with_auth());
    let keys = test_support::cosign::KeyPair::generate();
    let sh = shell();
    let signed = |version: &str, password: &str| {
        fixture.push(&sh, version).arg("--cosign-key").arg(&keys.key).env("COSIGN_PASSWORD", password)
    };
    let released = run_ok(signed("v1.2.3", test_support::cosign::PASSWORD));
    let digest = published_digest(&released);
    let (verified, signing, moved) = (
        released.find("==> verifying").unwrap(),
        released.find("==> signing").unwrap_or_else(|| panic!("{released}")),
        released.find("latest   -> v1.2.3").unwrap(),
    );
    assert!(verified < signing && signing < moved, "{released}");
    let verify = |digest: &str| {
        let (public, reference) = (&keys.public, format!("{}@{digest}", fixture.repository()));
        crate::run(
            cmd!(
                sh,
                "cosign verify --key {public} --insecure-ignore-tlog --allow-insecure-registry {reference}"
            )
            .env("DOCKER_CONFIG", fixture.registry.docker_config()),
        )
        .status
        .success()
    };
    assert!(verify(&digest), "the published index does not verify with the public key");
    let rerun = run_ok(signed("v1.2.3", test_support::cosign::PASSWORD));
    assert!(rerun.contains("signed with this key already"), "a rerun signed again:\n{rerun}");

    fixture.set_app("the next patch");
    let failed = run_err(
        signed("v1.2.4", test_support::cosign::PASSWORD).env("COSIGN_REPOSITORY", "127.0.0.1:9/signatures"),
    );
    assert!(failed.contains("==> verifying") && failed.contains("nothing was tagged"), "{failed}");
    assert!(failed.contains("signing 127.0.0.1:"), "{failed}");
    for pointer in ["latest", "v1.2", "v1"] {
        assert_eq!(digest_of(&fixture.raw(pointer).unwrap()), digest, "{pointer} moved without a signature");
    }
    assert_eq!(fixture.raw("v1.2.4"), None, "v1.2.4 was tagged without a signature");
    let verifying = format!("==> verifying {}@", fixture.repository());
    let next = failed.split(&verifying).nth(1).and_then(|rest| rest.lines().next()).unwrap().to_owned();
    assert!(!verify(&next), "v1.2.4 is signed although signing failed");

    // The rerun builds the same bytes (the engine builder is reproducible), signs, tags.
    let rerun = run_ok(signed("v1.2.4", test_support::cosign::PASSWORD));
    assert_eq!(published_digest(&rerun), next, "{rerun}");
    assert!(verify(&next), "the rerun did not sign v1.2.4");
    assert_eq!(digest_of(&fixture.raw("v1.2.4").unwrap()), next);
    assert_eq!(digest_of(&fixture.raw("latest").unwrap()), next);

    let writes = fixture.registry.writes();
    let refused = run_err(signed("v1.2.5", "not-the-password"));
    assert!(
        refused.contains("cosign cannot open the key") && refused.contains("COSIGN_PASSWORD"),
        "{refused}"
    );
    assert!(refused.contains("nothing was built or pushed"), "{refused}");
    assert_eq!(fixture.registry.writes(), writes, "a refused signer pushed");
}

#[test]
fn a_pre_release_moves_no_alias() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let release = published_digest(&run_ok(fixture.push(&sh, "v1.2.3")));
    fixture.set_app("candidate");
    let candidate = published_digest(&run_ok(fixture.push(&sh, "v1.3.0-rc.1")));
    assert_ne!(release, candidate);
    assert_eq!(digest_of(&fixture.raw("latest").unwrap()), release);
    assert_eq!(digest_of(&fixture.raw("v1").unwrap()), release);
    assert_eq!(fixture.raw("v1.3"), None, "a pre-release created a minor alias");
}

#[test]
fn a_dry_run_prints_the_plan_and_writes_nothing() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    run_ok(fixture.push(&sh, "v1.9.0"));
    let writes_before = fixture.registry.writes();
    let tags_before: Vec<Option<Vec<u8>>> =
        ["v1.9.0", "latest", "v1"].iter().map(|t| fixture.raw(t)).collect();
    for version in ["v2.0.0", "v1.9.0"] {
        let output = run_ok(fixture.push(&sh, version).arg("--dry-run"));
        assert!(output.contains("dry run: nothing built, nothing pushed"), "{output}");
        if version == "v2.0.0" {
            assert!(output.contains("5. point latest (from v1.9.0 to v2.0.0)"), "{output}");
        } else {
            assert!(output.contains("is published already as sha256:"), "{output}");
        }
    }
    assert_eq!(fixture.registry.writes(), writes_before, "a dry run wrote to the registry");
    let tags_after: Vec<Option<Vec<u8>>> =
        ["v1.9.0", "latest", "v1"].iter().map(|t| fixture.raw(t)).collect();
    assert_eq!(tags_after, tags_before);
    assert_eq!(fixture.raw("v2.0.0"), None);
}

/// Issue 26, point 3: release.yml's dry run built no image ("dry run: nothing built"),
/// so it never tried the builder, the base image or the registry login. A dry run of a
/// platform job builds the platform, with the builder a real run uses, and pushes
/// nothing (no digest on stdout for the merge either); the real push after it publishes
/// the manifest the dry run named (the engine builder's is a function of the commit).
#[test]
fn a_dry_run_of_a_platform_job_builds_it_and_pushes_nothing() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let writes_before = fixture.registry.writes();
    let (registry, base, context) = (fixture.registry.host(), &fixture.base, fixture.context.path());
    let by_digest = |dry_run: &[&str]| {
        cmd!(
            sh,
            "{XTASK} image --push --by-digest --platform linux/amd64 --builder engine --registry {registry} --version v1.0.0 --base-image {base} --context {context} {dry_run...}"
        )
    };
    let dry = crate::run(by_digest(&["--dry-run"]));
    let stderr = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success(), "{stderr}");
    assert!(stderr.contains("==> linux/amd64: building with"), "the dry run built nothing:\n{stderr}");
    let built = stderr
        .lines()
        .find_map(|line| line.strip_prefix("dry run: built linux/amd64 as "))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("the dry run names no digest:\n{stderr}"))
        .to_owned();
    assert!(dry.stdout.is_empty(), "a dry run handed a digest to the merge: {:?}", dry.stdout);
    assert_eq!(fixture.registry.writes(), writes_before, "a dry run wrote to the registry");

    let pushed = crate::run(by_digest(&[]));
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    assert_eq!(String::from_utf8_lossy(&pushed.stdout).trim(), built, "the dry run built another image");
}

#[test]
fn a_published_version_is_reused_and_never_re_pointed() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let first = published_digest(&run_ok(fixture.push(&sh, "v1.2.3")));

    // A rerun with a changed tree (a rebuild would differ) reuses what is published.
    fixture.set_app("changed after the release");
    let rerun = run_ok(fixture.push(&sh, "v1.2.3"));
    assert!(rerun.contains("is published already as"), "{rerun}");
    assert!(!rerun.contains("building with"), "the rerun rebuilt:\n{rerun}");
    assert_eq!(published_digest(&rerun), first);

    // Another build merged under the published version is refused, naming both.
    let registry = fixture.registry.host();
    let merge = fixture.push_by_digest(&sh, "v1.2.4").join(",");
    let root = fixture.at_release("v1.2.3");
    let refused = run_err(
        cmd!(sh, "{XTASK} image --merge {merge} --registry {registry} --version v1.2.3")
            .env("XTASK_PROJECT_ROOT", root),
    );
    assert!(
        refused.contains(&format!("v1.2.3 is published as {first}, and this build is sha256:")),
        "{refused}"
    );
    assert!(refused.contains("a published version never changes"), "{refused}");
    assert!(refused.contains("`cargo xtask release --bump patch`, v1.2.4"), "{refused}");
    assert_eq!(digest_of(&fixture.raw("v1.2.3").unwrap()), first);
    assert_eq!(digest_of(&fixture.raw("latest").unwrap()), first);

    // A per-platform rerun prints the published entries, and their merge is a no-op.
    let merge = fixture.push_by_digest(&sh, "v1.2.3").join(",");
    let merged = run_ok(
        cmd!(sh, "{XTASK} image --merge {merge} --registry {registry} --version v1.2.3")
            .env("XTASK_PROJECT_ROOT", fixture.at_release("v1.2.3")),
    );
    assert_eq!(published_digest(&merged), first);
}

#[test]
fn floating_pointers_only_move_forward_and_a_backport_moves_its_own_line() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let v130 = published_digest(&run_ok(fixture.push(&sh, "v1.3.0")));
    let at = |tag: &str| fixture.raw(tag).map(|bytes| digest_of(&bytes));

    // A plan made before v1.3.1 existed says `latest` moves to v1.2.4...
    let plan_dir = tempfile::tempdir().unwrap();
    let plan = plan_dir.path().join("plan.json");
    let registry = fixture.registry.host();
    run_ok(cmd!(sh, "{XTASK} plan --version v1.3.1 --registry {registry} --out {plan}"));
    fixture.set_app("1.3.2");
    let v132 = published_digest(&run_ok(fixture.push(&sh, "v1.3.2")));

    // ...but when it runs, v1.3.2 is out: the stale plan moves nothing backwards.
    fixture.set_app("1.3.1");
    let stale = run_ok(fixture.push_with_plan(&sh, &plan));
    assert!(stale.contains("latest   stays (v1.3.2 is newer on its line; the plan said:"), "{stale}");
    let v131 = published_digest(&stale);
    for pointer in ["latest", "v1.3", "v1"] {
        assert_eq!(at(pointer).as_deref(), Some(v132.as_str()), "{pointer} moved back to v1.3.1");
    }

    // A backport on the 1.2 line moves v1.2 alone.
    fixture.set_app("1.2.4");
    let backport = run_ok(fixture.push(&sh, "v1.2.4"));
    let v124 = published_digest(&backport);
    assert!(backport.contains("v1.2     -> v1.2.4"), "{backport}");
    assert_eq!(at("v1.2").as_deref(), Some(v124.as_str()));
    assert_eq!(at("latest").as_deref(), Some(v132.as_str()));
    assert_eq!(at("v1").as_deref(), Some(v132.as_str()));

    // A late rerun of v1.3.0 changes nothing.
    let rerun = run_ok(fixture.push(&sh, "v1.3.0"));
    assert_eq!(published_digest(&rerun), v130);
    assert_eq!(at("v1.3.0").as_deref(), Some(v130.as_str()));
    assert_eq!(at("v1.3.1").as_deref(), Some(v131.as_str()));
    assert_eq!(at("latest").as_deref(), Some(v132.as_str()));
    assert_eq!(at("v1.3").as_deref(), Some(v132.as_str()));
}

#[test]
fn credentials_from_stdin_are_used_and_never_printed() {
    let fixture = Fixture::new(TestRegistry::start_with_auth());
    let sh = shell();
    let credentials = fixture.registry.credentials().unwrap();
    let user = &credentials.username;
    // An empty Docker config: the only credentials are the ones given.
    let empty = tempfile::tempdir().unwrap();

    let wrong = run_err(
        fixture
            .push(&sh, "v1.0.0")
            .args(["--username", user, "--password-stdin"])
            .env("DOCKER_CONFIG", fixture.registry.docker_config())
            .stdin("not-the-password\n"),
    );
    assert!(wrong.contains("refused the credentials from --username/--password-stdin"), "{wrong}");
    assert!(
        !wrong.contains("==> linux/amd64: building"),
        "it built before checking the credentials:\n{wrong}"
    );
    assert!(!wrong.contains("not-the-password"), "the password was printed:\n{wrong}");

    let anonymous = run_err(fixture.push(&sh, "v1.0.0").env("DOCKER_CONFIG", empty.path()));
    assert!(anonymous.contains("refused the credentials from anonymous"), "{anonymous}");
    assert!(!anonymous.contains("building with"), "{anonymous}");

    let right = run_ok(
        fixture
            .push(&sh, "v1.0.0")
            .args(["--username", user, "--password-stdin"])
            .stdin(format!("{}\n", credentials.password)),
    );
    assert!(right.contains("credentials  --username/--password-stdin"), "{right}");
    assert!(!right.contains(&credentials.password), "the password was printed:\n{right}");
}

#[test]
fn a_registry_dying_mid_push_fails_cleanly_and_a_rerun_finishes_without_moving_latest_early() {
    let mut fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let released = published_digest(&run_ok(fixture.push(&sh, "v1.0.0")));

    fixture.set_app("second release");
    let mut child = Command::from(fixture.push(&sh, "v1.1.0"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut transcript = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Kill the registry once the second platform starts pushing: amd64's blobs and
    // manifest are in, arm64's and the index are not.
    for line in lines.by_ref() {
        let line = line.unwrap();
        transcript += &line;
        transcript.push('\n');
        if line.starts_with("==> linux/arm64: pushing") {
            fixture.registry.stop();
            break;
        }
    }
    for line in lines {
        transcript += &line.unwrap();
        transcript.push('\n');
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the push succeeded with the registry down:\n{transcript}");
    assert!(transcript.contains("gave up after"), "{transcript}");

    fixture.registry.restart();
    assert_eq!(digest_of(&fixture.raw("latest").unwrap()), released, "latest moved during a failed publish");
    assert_eq!(fixture.raw("v1.1.0"), None, "the index was pushed before its platforms");

    let rerun = published_digest(&run_ok(fixture.push(&sh, "v1.1.0")));
    assert_eq!(digest_of(&fixture.raw("latest").unwrap()), rerun);
    assert_ne!(rerun, released);
}

/// The raw bytes of `repository:tag` as skopeo reads them, or None when missing.
fn raw_in(registry: &TestRegistry, repository: &str, tag: &str) -> Option<Vec<u8>> {
    let sh = shell();
    let creds = registry.skopeo_creds();
    let remote = format!("docker://{repository}:{tag}");
    let output = cmd!(sh, "skopeo inspect --raw --tls-verify=false {creds...} {remote}")
        .quiet()
        .ignore_status()
        .output()
        .unwrap();
    output.status.success().then_some(output.stdout)
}

#[test]
fn per_platform_pushes_by_digest_merge_into_the_index_a_single_push_makes() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let (host, base, context) = (fixture.registry.host(), &fixture.base, fixture.context.path());
    let (single, scaled) = (format!("{host}/single"), format!("{host}/scaled"));
    let single_output = run_ok(cmd!(
        sh,
        "{XTASK} image --push --builder engine --registry {single} --version v1.2.3 --base-image {base} --context {context}"
    ));
    let single_digest = published_digest(&single_output);

    // One run per platform, as on one native runner each: a digest on stdout, no tag.
    let mut digests = Vec::new();
    for platform in ["linux/arm64", "linux/amd64"] {
        let output = crate::run(cmd!(
            sh,
            "{XTASK} image --push --by-digest --platform {platform} --builder engine --registry {scaled} --version v1.2.3 --base-image {base} --context {context}"
        ));
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        let digest = stdout.trim();
        assert!(
            digest.starts_with("sha256:") && !digest.contains('\n'),
            "stdout is not one digest: {stdout:?}"
        );
        digests.push(digest.to_owned());
    }
    let repository = format!("{scaled}/agent-runner");
    for tag in ["v1.2.3", "latest"] {
        assert_eq!(raw_in(&fixture.registry, &repository, tag), None, "a by-digest push set {tag}");
    }

    let merge = digests.clone();
    let merged = run_ok(cmd!(sh, "{XTASK} image --merge {merge...} --registry {scaled} --version v1.2.3"));
    let verified = merged.find("==> verifying").unwrap();
    assert!(verified < merged.find("==> published").unwrap(), "{merged}");
    assert_eq!(
        published_digest(&merged),
        single_digest,
        "the merged index differs from the single push's:\n{merged}"
    );
    let index = raw_in(&fixture.registry, &repository, "v1.2.3").unwrap();
    let single_index = raw_in(&fixture.registry, &format!("{single}/agent-runner"), "v1.2.3").unwrap();
    assert_eq!(index, single_index);
    let entries: Vec<(String, String)> = serde_json::from_slice::<Value>(&index).unwrap()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut given = digests.clone();
    given.reverse(); // amd64 first: the index is in platform order, whatever the merge order
    assert_eq!(entries, [("amd64".to_owned(), given[0].clone()), ("arm64".to_owned(), given[1].clone())]);
    for alias in ["latest", "v1.2", "v1"] {
        assert_eq!(raw_in(&fixture.registry, &repository, alias).as_deref(), Some(&index[..]), "{alias}");
    }

    // The arm64 image again, labelled as built from another commit (what a by-digest
    // push from another checkout leaves): a merge naming it publishes nothing.
    let other_commit = "0".repeat(40);
    let foreign = fixture.registry.relabelled("scaled/agent-runner", &digests[0], &other_commit);
    let amd64 = &digests[1];
    let refused =
        run_err(cmd!(sh, "{XTASK} image --merge {amd64} {foreign} --registry {scaled} --version v1.2.4"));
    assert!(
        refused.contains(&format!("the linux/arm64 image was built from {other_commit}, not from ")),
        "{refused}"
    );
    assert!(!refused.contains("linux/amd64 image was built"), "{refused}");
    for tag in ["v1.2.4", "v1.2", "v1", "latest"] {
        let expected = (tag != "v1.2.4").then_some(&index[..]);
        assert_eq!(raw_in(&fixture.registry, &repository, tag).as_deref(), expected, "{tag}");
    }
}

#[test]
fn a_merge_of_an_unknown_digest_tags_nothing() {
    let fixture = Fixture::new(TestRegistry::start());
    let sh = shell();
    let registry = fixture.registry.host();
    let missing = format!("sha256:{}", "0".repeat(64));
    let output = run_err(cmd!(sh, "{XTASK} image --merge {missing} --registry {registry} --version v1.0.0"));
    assert!(output.contains(&format!("{missing} does not exist")), "{output}");
    assert_eq!(fixture.raw("v1.0.0"), None);
}

#[test]
fn a_dependency_without_a_wheel_for_a_platform_stops_the_push_before_any_tag() {
    let fixture = Fixture::new(TestRegistry::start());
    let context = crate::image::agent_runner_with(crate::image::SDIST_ONLY_DEPENDENCY);
    let sh = shell();
    let (registry, base, dir) = (fixture.registry.host(), &fixture.base, context.path());
    let output = run_err(cmd!(
        sh,
        "{XTASK} image --push --builder engine --platform linux/arm64 --registry {registry} --version v1.0.0 --base-image {base} --context {dir}"
    ));
    assert!(output.contains("docopt==0.6.2 has no wheel for linux/arm64"), "{output}");
    for tag in ["v1.0.0", "latest"] {
        assert_eq!(fixture.raw(tag), None, "{tag} exists after a refused build");
    }
    let pushed: Vec<(String, String)> =
        fixture.registry.writes().into_iter().filter(|(_, path)| path.contains("/agent-runner/")).collect();
    assert!(pushed.is_empty(), "the refused build pushed: {pushed:?}");
}

/// The buildx builder for real, on the second engine `ci/setup.sh` starts (dockerd 26
/// with the containerd image store, see `test_support::buildx`): one two-platform build
/// of the agent-runner pushed with provenance (mode=max) and an SBOM made by the test
/// scanner, verified and aliased; `verify-image` reports the attestation manifests.
/// Then the unchanged tree again with `--cache-from` the registry cache the first build
/// exported: every RUN and COPY step is reused.
///
/// The engine's own build cache survives between builds too, so "CACHED" alone would
/// not prove the registry cache was read: the test also checks that the second build
/// imported the cache manifest from the registry (BuildKit's progress and the
/// registry's log) and that the first build exported the layers of every step there.
#[test]
fn buildx_pushes_two_platforms_with_provenance_and_sbom_and_a_rebuild_reuses_the_registry_cache() {
    let fixture = Fixture::new(TestRegistry::start_with_auth());
    let buildx = BuildxEnv::new(&fixture.registry);
    let scanner = test_support::buildx::sbom_scanner(&buildx, &fixture.registry);
    let sh = shell();
    let (host, base) = (fixture.registry.host(), &fixture.base);
    let cache = format!("type=registry,ref={host}/cache:buildx");
    let push = |version: &str, cache_flag: &str, cache: &str| {
        buildx.cmd(cmd!(
            sh,
            "{XTASK} image --push --builder buildx --registry {host} --version {version} --base-image {base} --sbom-generator {scanner} {cache_flag} {cache}"
        ))
    };

    // One --cache-to per build: two corrupt the cache on this BuildKit (ENVIRONMENT.md).
    let first = run_ok(push("v1.0.0", "--cache-to", &format!("{cache},mode=max")));
    let digest = published_digest(&first);
    assert!(first.contains("builder      buildx"), "{first}");
    let index = fixture.raw("v1.0.0").expect("v1.0.0 exists");
    assert_eq!(digest_of(&index), digest);
    for alias in ["latest", "v1.0", "v1"] {
        assert_eq!(fixture.raw(alias).as_deref(), Some(&index[..]), "{alias} is not a byte copy of v1.0.0");
    }

    let repository = fixture.repository();
    let verified = run_ok(
        buildx.cmd(cmd!(sh, "{XTASK} verify-image {repository}:v1.0.0 --same-digest-as {repository}:latest")),
    );
    assert!(verified.contains("+ 2 attestation manifest(s), not counted as platforms"), "{verified}");

    // Each platform has an attestation manifest naming it, with provenance and an SBOM.
    let index_json: Value = serde_json::from_slice(&index).unwrap();
    let entries = index_json["manifests"].as_array().unwrap();
    let images: Vec<(&str, &str)> = entries
        .iter()
        .filter(|m| m["annotations"]["vnd.docker.reference.type"].is_null())
        .map(|m| (m["platform"]["architecture"].as_str().unwrap(), m["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(images.iter().map(|(arch, _)| *arch).collect::<Vec<_>>(), ["amd64", "arm64"], "{index_json}");
    for (arch, image) in &images {
        let attestation = entries
            .iter()
            .find(|m| m["annotations"]["vnd.docker.reference.digest"] == *image)
            .unwrap_or_else(|| panic!("no attestation manifest for {arch}: {index_json}"));
        let manifest: Value = serde_json::from_slice(&manifest_by_digest(
            &fixture.registry,
            &repository,
            &attestation["digest"],
        ))
        .unwrap();
        let statement = |predicate_type: &str| -> Value {
            let layer = manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["annotations"]["in-toto.io/predicate-type"] == predicate_type)
                .unwrap_or_else(|| panic!("{arch}: no {predicate_type} attestation in {manifest}"));
            let blob = test_support::registry::blob_data_path(
                &fixture.registry.storage(),
                layer["digest"].as_str().unwrap(),
            );
            serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap()
        };
        let provenance = statement("https://slsa.dev/provenance/v0.2");
        // mode=max records the build definition; mode=min leaves buildConfig out.
        assert!(provenance["predicate"]["buildConfig"].is_object(), "{arch}: not mode=max: {provenance}");
        let sbom = statement("https://spdx.dev/Document");
        assert_eq!(sbom["predicate"]["creationInfo"]["creators"][0], "Tool: stigmer-test-sbom-scanner");
        let purls: Vec<&str> = sbom["predicate"]["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["externalRefs"][0]["referenceLocator"].as_str().unwrap())
            .collect();
        // The scanner saw this platform's root filesystem: its Debian packages and the
        // agent-runner's locked dependencies.
        assert!(
            purls
                .iter()
                .any(|p| p.starts_with("pkg:deb/debian/python3@") && p.ends_with(&format!("arch={arch}"))),
            "{arch}: {purls:?}"
        );
        assert!(purls.iter().any(|p| p.starts_with("pkg:pypi/starlette@")), "{arch}: {purls:?}");
    }

    // The cache manifest is read by tag, then its config and layers as blobs.
    let cache_reads = |registry: &TestRegistry| -> Vec<(String, String)> {
        registry
            .requests()
            .into_iter()
            .filter(|(method, path)| (method == "GET" || method == "HEAD") && path.starts_with("/v2/cache/"))
            .collect()
    };
    // A rerun of the same version is verified and reused: buildx would make a new
    // index digest (its provenance records each build's times), so nothing is built.
    let rerun = run_ok(push("v1.0.0", "--cache-from", &cache));
    assert!(rerun.contains("is published already as") && !rerun.contains("importing cache"), "{rerun}");
    assert_eq!(published_digest(&rerun), digest);

    // The unchanged tree as the next version builds from the registry cache.
    let reads_before = cache_reads(&fixture.registry);
    let second = run_ok(push("v1.0.1", "--cache-from", &cache));
    assert!(
        second.lines().any(|l| l.contains(&format!("importing cache manifest from {host}/cache:buildx"))),
        "{second}"
    );
    let reads = cache_reads(&fixture.registry);
    assert!(
        reads[reads_before.len()..].iter().any(|(_, path)| path == "/v2/cache/manifests/buildx"),
        "the rebuild never read the registry cache: {reads:?}"
    );
    let steps = built_steps(&second);
    assert!(steps.len() >= 8, "expected the RUN and COPY steps of both platforms:\n{second}");
    let rebuilt: Vec<&String> = steps
        .iter()
        .filter(|(id, _)| !second.lines().any(|l| l == format!("#{id} CACHED")))
        .map(|(_, step)| step)
        .collect();
    assert!(rebuilt.is_empty(), "steps rebuilt from an unchanged tree: {rebuilt:#?}\n{second}");
    // The same layers, byte for byte, for each platform: only the version's labels differ.
    let layers_of = |index: &[u8]| -> Vec<Value> {
        let index: Value = serde_json::from_slice(index).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["annotations"]["vnd.docker.reference.type"].is_null())
            .map(|m| {
                let manifest = manifest_by_digest(&fixture.registry, &repository, &m["digest"]);
                serde_json::from_slice::<Value>(&manifest).unwrap()["layers"].clone()
            })
            .collect()
    };
    assert_eq!(layers_of(&fixture.raw("v1.0.1").unwrap()), layers_of(&index), "the rebuild changed a layer");

    // Explicit credentials reach buildx without `docker login`: a Docker config with
    // the plugin and no credentials at all.
    let bare_config = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(test_support::buildx::plugins(), bare_config.path().join("cli-plugins"))
        .unwrap();
    let credentials = fixture.registry.credentials().unwrap();
    let user = &credentials.username;
    let explicit = run_ok(
        buildx
            .cmd(cmd!(
                sh,
                "{XTASK} image --push --builder buildx --registry {host} --version v1.0.2 --base-image {base} --sbom-generator {scanner} --cache-from {cache} --username {user} --password-stdin"
            ))
            .env("DOCKER_CONFIG", bare_config.path())
            .stdin(format!("{}\n", credentials.password)),
    );
    assert!(explicit.contains("credentials  --username/--password-stdin"), "{explicit}");
    assert!(!explicit.contains(&credentials.password), "the password was printed:\n{explicit}");
    assert!(fixture.raw("v1.0.2").is_some(), "{explicit}");
    let left: Vec<_> =
        std::fs::read_dir(bare_config.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["cli-plugins"], "the credentials were written into the user's Docker config");

    // A dry run of a platform job builds with buildx too, and pushes nothing.
    let writes_before = fixture.registry.writes();
    let dry = crate::run(buildx.cmd(cmd!(
        sh,
        "{XTASK} image --push --by-digest --platform linux/amd64 --builder buildx --registry {host} --version v1.0.3 --base-image {base} --sbom-generator {scanner} --cache-from {cache} --dry-run"
    )));
    let stderr = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success() && stderr.contains("dry run: built linux/amd64 as sha256:"), "{stderr}");
    assert!(stderr.contains("importing cache manifest"), "buildx did not build:\n{stderr}");
    assert!(dry.stdout.is_empty(), "a dry run handed a digest to the merge: {:?}", dry.stdout);
    assert_eq!(fixture.registry.writes(), writes_before, "a dry run wrote to the registry");
}

/// The raw bytes of `repository@digest`, read with skopeo.
fn manifest_by_digest(registry: &TestRegistry, repository: &str, digest: &Value) -> Vec<u8> {
    let sh = shell();
    let creds = registry.skopeo_creds();
    let remote = format!("docker://{repository}@{}", digest.as_str().unwrap());
    cmd!(sh, "skopeo inspect --raw --tls-verify=false {creds...} {remote}").quiet().output().unwrap().stdout
}

/// The RUN, COPY and ADD steps in buildx's plain progress output, as (step id, title).
fn built_steps(progress: &str) -> Vec<(String, String)> {
    progress
        .lines()
        .filter_map(|line| {
            let (id, title) = line.strip_prefix('#')?.split_once(' ')?;
            let instruction = title.strip_prefix('[')?.split_once("] ")?.1;
            let built = ["RUN ", "COPY ", "ADD "].iter().any(|i| instruction.starts_with(i));
            (built && id.chars().all(|c| c.is_ascii_digit())).then(|| (id.to_owned(), title.to_owned()))
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect()
}

/// The backport scenario end to end through git, the plan, the registry and the tap:
/// v1.2.3 and v1.3.0 released on main, v1.2.4 cut from a maintenance branch, then
/// v1.3.0's jobs run again. Each release's jobs run as release.yml runs them: `plan`,
/// then `image --plan`, then `homebrew --plan`.
#[test]
fn a_backport_from_a_maintenance_branch_moves_its_own_line_and_a_rerun_changes_nothing() {
    let fixture = Fixture::new(TestRegistry::start());
    let repo = crate::release::release_repo();
    let tap = TestRepo::new();
    tap.write("README.md", "# tap\n");
    tap.commit_all("start");
    tap.git(&["push", "--quiet", "origin", "main"]);
    let sh = shell();
    let registry = fixture.registry.host();
    fn in_repo<'a>(cmd: xshell::Cmd<'a>, repo: &TestRepo) -> xshell::Cmd<'a> {
        cmd.env("XTASK_PROJECT_ROOT", repo.work())
    }
    let jobs = |version: &str| -> String {
        let temp = tempfile::tempdir().unwrap();
        let plan = temp.path().join("plan.json");
        run_ok(in_repo(
            cmd!(sh, "{XTASK} plan --version {version} --registry {registry} --out {plan}"),
            &repo,
        ));
        let published = published_digest(&run_ok(in_repo(fixture.push_with_plan(&sh, &plan), &repo)));
        let sums = temp.path().join("checksums.txt");
        let bare = version.trim_start_matches('v');
        let lines: String = [
            "darwin-amd64.tar.gz",
            "darwin-arm64.tar.gz",
            "linux-amd64.tar.gz",
            "linux-arm64.tar.gz",
            "windows-amd64.zip",
        ]
        .iter()
        .map(|archive| format!("{}  stigmer-v{bare}-{archive}\n", "0".repeat(64)))
        .collect();
        std::fs::write(&sums, lines).unwrap();
        let tap_dir = tap.work();
        run_ok(in_repo(
            cmd!(sh, "{XTASK} homebrew --plan {plan} --checksums {sums} --tap {tap_dir} --push"),
            &repo,
        ));
        published
    };
    let release = |args: &[&str]| {
        let args = args.to_vec();
        run_ok(in_repo(cmd!(sh, "{XTASK} release {args...}"), &repo))
    };

    release(&["--bump", "1.2.3", "--push"]);
    jobs("v1.2.3");
    crate::release::add_entry(&repo, "a feature");
    release(&["--bump", "1.3.0", "--push"]);
    fixture.set_app("1.3.0");
    let v130 = jobs("v1.3.0");

    repo.git(&["switch", "--quiet", "-c", "maint-1.2", "v1.2.3"]);
    repo.git(&["push", "--quiet", "origin", "maint-1.2"]);
    crate::release::add_entry(&repo, "a fix for 1.2");
    repo.git(&["push", "--quiet", "origin", "maint-1.2"]);
    release(&["--bump", "patch", "--branch", "maint-1.2", "--push"]);
    // The backport's changelog compares with the previous release of its own line.
    let changelog = std::fs::read_to_string(repo.work().join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains("compare/v1.2.3...v1.2.4"), "{changelog}");
    fixture.set_app("1.2.4");
    let v124 = jobs("v1.2.4");

    // v1.3.0's jobs again, late, at its tag (a rerun checks out the tag's commit: from
    // another commit the published index is refused as not this release's), with an
    // app that would build differently.
    repo.git(&["checkout", "--quiet", "--detach", "v1.3.0"]);
    fixture.set_app("a rebuild would differ");
    assert_eq!(jobs("v1.3.0"), v130);

    let at = |tag: &str| fixture.raw(tag).map(|bytes| digest_of(&bytes));
    assert_eq!(at("latest").as_deref(), Some(v130.as_str()));
    assert_eq!(at("v1").as_deref(), Some(v130.as_str()));
    assert_eq!(at("v1.3").as_deref(), Some(v130.as_str()));
    assert_eq!(at("v1.2").as_deref(), Some(v124.as_str()));
    assert_eq!(at("v1.3.0").as_deref(), Some(v130.as_str()));
    let formula = std::fs::read_to_string(tap.work().join("Formula/stigmer.rb")).unwrap();
    assert!(formula.contains("version \"1.3.0\""), "{formula}");
    assert_eq!(tap.git(&["log", "--format=%s"]), "stigmer 1.3.0\nstigmer 1.2.3\nstart");
}

/// The automatic builder asks what buildx's builder can do, on both engines here:
/// dockerd 26's `docker` driver (containerd image store) builds with buildx, by digest
/// too (buildx writes an OCI layout, which xtask pushes), so the workflow's per-platform
/// jobs (`--by-digest`, no `--builder`) run through buildx there, for real: both
/// platforms pushed by digest, merged, verified. On the 20.10 engine the same buildx
/// plugin cannot attest at all, so the engine builder is chosen, and `--builder buildx`
/// is refused saying what is missing. (On a GitHub runner the default engine is the
/// buildx one: the test reads which store it has rather than assuming this machine.)
#[test]
fn the_automatic_builder_asks_what_buildx_can_do_and_by_digest_jobs_run_on_dockerd_26() {
    let fixture = Fixture::new(TestRegistry::start_with_auth());
    let buildx = BuildxEnv::new(&fixture.registry);
    let scanner = test_support::buildx::sbom_scanner(&buildx, &fixture.registry);
    let sh = shell();
    let (registry, base, context) = (fixture.registry.host(), &fixture.base, fixture.context.path());
    let dry_run = |extra: &[&str]| {
        cmd!(
            sh,
            "{XTASK} image --push --dry-run --registry {registry} --version v1.0.0 --base-image {base} --context {context} {extra...}"
        )
        .env("DOCKER_CONFIG", buildx.docker_config())
    };

    let index = run_ok(dry_run(&[]).env("DOCKER_HOST", buildx.docker_host()));
    assert!(
        index.contains("builder      buildx") && index.contains("(buildx's docker driver can make this)"),
        "{index}"
    );
    // A platform job's dry run builds, with the builder it names (the test's SBOM
    // scanner: BuildKit's default one is on Docker Hub).
    let by_digest = run_ok(
        dry_run(&["--by-digest", "--platform", "linux/amd64", "--sbom-generator", &scanner])
            .env("DOCKER_HOST", buildx.docker_host()),
    );
    assert!(
        by_digest.contains("builder      buildx")
            && by_digest.contains("(buildx's docker driver can make this)")
            && by_digest.contains("dry run: built linux/amd64 as sha256:"),
        "{by_digest}"
    );

    // The first engine, with the same plugin in reach.
    let default_engine = dry_run(&[]).env_remove("DOCKER_HOST");
    let format = "{{json .DriverStatus}}";
    let status = cmd!(sh, "docker info --format {format}").env_remove("DOCKER_HOST").read().unwrap();
    let classic = run_ok(default_engine);
    if status.contains("io.containerd.snapshotter.v1") {
        assert!(classic.contains("builder      buildx"), "{status}\n{classic}");
    } else {
        assert!(
            classic.contains("builder      engine") && classic.contains("containerd image store"),
            "{classic}"
        );
        let refused = run_err(dry_run(&["--builder", "buildx"]).env_remove("DOCKER_HOST"));
        assert!(
            refused.contains("--builder buildx cannot make this image")
                && refused.contains("--builder engine"),
            "{refused}"
        );
    }

    // The workflow's image-platform jobs, then its merge, against dockerd 26.
    let mut digests = Vec::new();
    for platform in ["linux/amd64", "linux/arm64"] {
        let output = crate::run(buildx.cmd(cmd!(
            sh,
            "{XTASK} image --push --by-digest --platform {platform} --registry {registry} --version v1.0.0 --base-image {base} --context {context} --sbom-generator {scanner}"
        )));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && stderr.contains("builder      buildx"), "{stderr}");
        digests.push(String::from_utf8(output.stdout).unwrap().trim().to_owned());
    }
    let merged = run_ok(
        buildx.cmd(cmd!(sh, "{XTASK} image --merge {digests...} --registry {registry} --version v1.0.0")),
    );
    let digest = published_digest(&merged);
    let reference = format!("{}@{digest}", fixture.repository());
    let verified = run_ok(
        buildx
            .cmd(cmd!(sh, "{XTASK} verify-image {reference} --platform linux/amd64 --platform linux/arm64")),
    );
    assert!(verified.contains("linux/arm64"), "{verified}");
}
