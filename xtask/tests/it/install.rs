//! `install.sh`, the release's installer, run by dash (also as `curl | sh` runs it, from
//! stdin), busybox sh and bash against a local HTTP server serving a release these tests
//! made: `dist` for this machine, checksums.txt signed with a test key.

use std::path::{Path, PathBuf};

use test_support::{cosign::KeyPair, shell};
use xshell::{cmd, Cmd, Shell};

use crate::{run, run_ok, verify_release::Server, XTASK};

const VERSION: &str = "1.2.3";

/// A release in `dir`: this machine's archive, install.sh, checksums.txt and its
/// signature by `keys`.
struct Release {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    keys: KeyPair,
}

impl Release {
    fn make() -> Release {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("dist");
        let keys = KeyPair::generate();
        let sh = shell();
        let triple = crate::dist::host_triple();
        run_ok(cmd!(sh, "{XTASK} dist --target {triple} --version {VERSION} --out {dir}"));
        let key = &keys.key;
        run_ok(
            cmd!(sh, "{XTASK} checksums {dir} --cosign-key {key}")
                .env("COSIGN_PASSWORD", test_support::cosign::PASSWORD),
        );
        Release { _temp: temp, dir, keys }
    }

    fn archive(&self) -> PathBuf {
        let platform = match std::env::consts::ARCH {
            "aarch64" => "linux-arm64",
            _ => "linux-amd64",
        };
        self.dir.join(format!("stigmer-v{VERSION}-{platform}.tar.gz"))
    }
}

/// `shell... install.sh` from `url` into `into`, with temporary files under `tmp` (to
/// check that none stay) and the release's public key for cosign.
fn install<'a>(
    sh: &'a Shell,
    shell: &[&str],
    release: &Release,
    url: &str,
    into: &Path,
    tmp: &Path,
) -> Cmd<'a> {
    let installer = release.dir.join("install.sh");
    let (program, args) = shell.split_first().unwrap();
    cmd!(sh, "{program} {args...} {installer}")
        .env("STIGMER_INSTALL_URL", url)
        .env("STIGMER_INSTALL_DIR", into)
        .env("STIGMER_INSTALL_COSIGN_KEY", &release.keys.public)
        .env("TMPDIR", tmp)
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The names in `dir`, sorted; none when it does not exist.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_installer_installs_under_dash_busybox_and_bash_and_again_over_itself() {
    let release = Release::make();
    let server = Server::serve(&release.dir);
    let sh = shell();
    let tmp = tempfile::tempdir().unwrap();
    for shell in [&["dash"][..], &["busybox", "sh"], &["bash"]] {
        assert!(test_support::on_path(shell[0]), "{} is not on PATH: apt-get install {}", shell[0], shell[0]);
        let into = tempfile::tempdir().unwrap();
        let bin = into.path().join("bin");
        let output = run_ok(install(&sh, shell, &release, &server.url(), &bin, tmp.path()));
        assert!(
            output.contains("checksums.txt is signed by the release workflow (cosign)"),
            "{shell:?}: {output}"
        );
        assert!(output.contains(&format!("installed stigmer {VERSION} to {}", bin.display())), "{output}");
        let installed = bin.join("stigmer");
        let version = run_ok(cmd!(sh, "{installed} --version"));
        assert!(version.starts_with(&format!("stigmer {VERSION}")), "{shell:?}: {version}");
        assert_eq!(entries(&bin), ["stigmer"], "{shell:?}");
        assert!(entries(tmp.path()).is_empty(), "{shell:?} left {:?}", entries(tmp.path()));

        // Again over the first, as an upgrade does.
        run_ok(install(&sh, shell, &release, &server.url(), &bin, tmp.path()));
        assert_eq!(entries(&bin), ["stigmer"], "{shell:?}");
        run_ok(cmd!(sh, "{installed} --version"));
    }

    // As `curl … | sh` runs it: the script on stdin.
    let into = tempfile::tempdir().unwrap();
    let script = std::fs::read(release.dir.join("install.sh")).unwrap();
    run_ok(
        install(&sh, &["dash", "-s"], &release, &server.url(), into.path(), tmp.path())
            .arg("--")
            .stdin(script),
    );
    assert_eq!(entries(into.path()), ["stigmer"]);

    // Without cosign the sha256 is still checked, and it says what it did not check.
    let into = tempfile::tempdir().unwrap();
    let output = run_ok(
        install(&sh, &["dash"], &release, &server.url(), into.path(), tmp.path())
            .env("PATH", "/usr/bin:/bin"),
    );
    assert!(output.contains("cosign is not on PATH: checking the sha256 only"), "{output}");
    assert_eq!(entries(into.path()), ["stigmer"]);
}

#[test]
fn a_changed_archive_an_unsigned_checksums_txt_or_an_old_cosign_is_refused_and_nothing_is_installed() {
    let release = Release::make();
    let server = Server::serve(&release.dir);
    let sh = shell();
    let tmp = tempfile::tempdir().unwrap();
    let into = tempfile::tempdir().unwrap();
    let bin = into.path().join("bin");

    let archive = release.archive();
    let original = std::fs::read(&archive).unwrap();
    let mut changed = original.clone();
    changed.extend_from_slice(b"appended after the checksums");
    std::fs::write(&archive, &changed).unwrap();
    for shell in [&["dash"][..], &["busybox", "sh"], &["bash"]] {
        let output = run(install(&sh, shell, &release, &server.url(), &bin, tmp.path()));
        let text = text(&output);
        assert_eq!(output.status.code(), Some(1), "{shell:?}: {text}");
        assert!(text.contains("but checksums.txt says"), "{shell:?}: {text}");
        assert!(text.contains("nothing was installed"), "{shell:?}: {text}");
        assert!(!bin.exists(), "{shell:?} created {}", bin.display());
        assert!(entries(tmp.path()).is_empty(), "{shell:?} left {:?}", entries(tmp.path()));
    }

    // checksums.txt rewritten to match the changed archive: its signature no longer does.
    let sums_path = release.dir.join("checksums.txt");
    let sums = std::fs::read_to_string(&sums_path).unwrap();
    let name = archive.file_name().unwrap().to_str().unwrap();
    let old = sums.lines().find(|line| line.ends_with(name)).unwrap().split_whitespace().next().unwrap();
    let new = cmd!(sh, "sha256sum {archive}").read().unwrap();
    let new = new.split_whitespace().next().unwrap();
    std::fs::write(&sums_path, sums.replace(old, new)).unwrap();
    let output = run(install(&sh, &["dash"], &release, &server.url(), &bin, tmp.path()));
    let text = text(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("the signature of checksums.txt does not verify"), "{text}");
    assert!(!bin.exists(), "created {}", bin.display());
    assert!(entries(tmp.path()).is_empty(), "left {:?}", entries(tmp.path()));

    // A cosign older than 2.4 has no --new-bundle-format and cannot read the Sigstore
    // bundle: it stops the install, naming the fix, rather than reporting tampering.
    let old_cosign = tempfile::tempdir().unwrap();
    let cosign = old_cosign.path().join("cosign");
    std::fs::write(&cosign, "#!/bin/sh\necho 'Usage: cosign verify-blob [flags]'\n").unwrap();
    cmd!(sh, "chmod +x {cosign}").run().unwrap();
    let into = tempfile::tempdir().unwrap();
    let output = run(install(&sh, &["dash"], &release, &server.url(), into.path(), tmp.path())
        .env("PATH", format!("{}:/usr/bin:/bin", old_cosign.path().display())));
    let said = self::text(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("is older than 2.4 and cannot read a Sigstore bundle: upgrade cosign"), "{said}");
    assert!(entries(into.path()).is_empty(), "{:?}", entries(into.path()));
}

#[test]
fn an_unsupported_architecture_is_refused_naming_the_builds() {
    // Only install.sh is needed: it stops before downloading anything.
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    std::fs::write(dir.join(format!("stigmer-v{VERSION}-linux-amd64.tar.gz")), "not read").unwrap();
    let sh = shell();
    run_ok(cmd!(sh, "{XTASK} checksums {dir}"));
    let installer = dir.join("install.sh");
    let into = dir.join("bin");
    // A 32-bit x86 personality: `uname -m` says i686, as on such a machine.
    let output = run(cmd!(sh, "setarch i686 dash {installer}")
        .env("STIGMER_INSTALL_URL", "http://127.0.0.1:9/")
        .env("STIGMER_INSTALL_DIR", &into));
    let text = text(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "no stigmer build for linux on i686: stigmer is built for amd64 (x86_64) and arm64 (aarch64)"
        ),
        "{text}"
    );
    assert!(text.contains("nothing was installed"), "{text}");
    assert!(!into.exists());
}

#[test]
fn the_installer_passes_shellcheck_as_posix_sh() {
    assert!(test_support::on_path("shellcheck"), "shellcheck is not on PATH: apt-get install shellcheck");
    let sh = shell();
    let installer = test_support::project_root().join("xtask/src/dist/install.sh");
    run_ok(cmd!(sh, "shellcheck --shell=sh {installer}"));
}
