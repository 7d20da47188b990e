//! `cargo xtask dist`: every refusal leaving the out directory as it was, checksums of
//! archives from separate runners, and the checks the release rehearsal makes on the
//! five CLIs it builds (cross-built with cargo-zigbuild, unpacked and run, linux/arm64
//! under qemu, Mach-O headers and signature checked, Windows a PE console program (it
//! runs under Wine in windows.rs); its rerun checks them byte for byte).

use std::path::{Path, PathBuf};

use sha2::Digest;
use test_support::shell;
use xshell::cmd;

use crate::{run_err, run_ok, XTASK};

/// The checks on the five CLIs of a release (the rehearsal builds them, once per test
/// run): `binary(platform)` is each unpacked `stigmer` (`stigmer.exe`). The host's runs
/// and names its version, commit and build date; linux/arm64 runs under qemu; the macOS
/// binaries are Mach-O of their arch, and the arm64 one carries a valid ad-hoc
/// signature; Windows' is a PE32+ console program.
pub(crate) fn check_binaries(binary: &dyn Fn(&str) -> PathBuf, version: &str, revision: &str) {
    let sh = shell();
    let host_binary = binary(host_platform());
    let host = run_ok(cmd!(sh, "{host_binary} --version"));
    assert!(host.starts_with(&format!("stigmer {version}\n")), "{host}");
    assert!(host.contains(&format!("revision:      {revision}")), "{host}");
    assert!(host.contains("built:         20"), "{host}");
    // Nothing of this machine's paths: not the checkout (nor the target directory below
    // it), not CARGO_HOME. dist's remapping keeps them out, and so its flags the same
    // for every checkout.
    for platform in ["linux-amd64", "linux-arm64", "darwin-arm64", "darwin-amd64", "windows-amd64"] {
        let bytes = std::fs::read(binary(platform)).unwrap();
        let cargo_home = std::env::var("CARGO_HOME")
            .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
        for path in [test_support::project_root().display().to_string(), cargo_home] {
            assert!(
                !bytes.windows(path.len()).any(|window| window == path.as_bytes()),
                "the {platform} binary holds {path}"
            );
        }
    }

    // binfmt hands the foreign binary to qemu-aarch64: the static musl build needs nothing else.
    let arm_binary = binary("linux-arm64");
    let arm = run_ok(cmd!(sh, "{arm_binary} -V"));
    assert_eq!(arm.trim(), format!("stigmer {version}"));
    let elf = run_ok(cmd!(sh, "file {arm_binary}"));
    assert!(
        elf.contains("ELF 64-bit LSB") && elf.contains("ARM aarch64") && elf.contains("statically linked"),
        "{elf}"
    );

    for (platform, arch) in [("darwin-arm64", "arm64"), ("darwin-amd64", "x86_64")] {
        let mac_binary = binary(platform);
        let kind = run_ok(cmd!(sh, "file {mac_binary}"));
        assert!(kind.contains(&format!("Mach-O 64-bit {arch} executable")), "{platform}: {kind}");
    }
    let windows_binary = binary("windows-amd64");
    let kind = run_ok(cmd!(sh, "file {windows_binary}"));
    assert!(kind.contains("PE32+ executable (console) x86-64, for MS Windows"), "windows-amd64: {kind}");
    // macOS kills an unsigned arm64 binary: the linker signs it ad hoc, and after dist
    // rewrote its UUID every signed page must still hash to its slot.
    assert_eq!(
        code_signature_pages(&binary("darwin-arm64")),
        Some(true),
        "darwin-arm64's signature is missing or stale"
    );
}

/// What a user sees with `tar -tv`, sizes left out (they change with every edit).
pub(crate) fn listing(archive: &Path) -> String {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut lines = Vec::new();
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header().clone();
        let path = entry.path().unwrap().display().to_string();
        lines.push(format!(
            "{:o} {}:{} user={:?} group={:?} mtime={} {path}",
            header.mode().unwrap(),
            header.uid().unwrap(),
            header.gid().unwrap(),
            header.username().unwrap().unwrap_or(""),
            header.groupname().unwrap().unwrap_or(""),
            header.mtime().unwrap(),
        ));
    }
    let gzip = std::fs::read(archive).unwrap();
    lines.push(format!("gzip mtime={:?} flags={:#04x}", &gzip[4..8], gzip[3]));
    lines.join("\n")
}

/// `Some(true)` when the binary has an ad-hoc signature whose SHA-256 code slots all
/// match their pages (what macOS checks when it maps them), `None` without a signature.
fn code_signature_pages(binary: &Path) -> Option<bool> {
    const LC_CODE_SIGNATURE: u32 = 0x1d;
    let bytes = std::fs::read(binary).unwrap();
    let le = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let mut at = 32;
    let mut signature = None;
    for _ in 0..le(16) {
        if le(at) == LC_CODE_SIGNATURE as usize {
            signature = Some(le(at + 8));
        }
        at += le(at + 4);
    }
    let superblob = signature?;
    for index in 0..be(superblob + 8) {
        let directory = superblob + be(superblob + 12 + index * 8 + 4);
        if be(directory) != 0xfade_0c02 {
            continue;
        }
        let (hashes, slots, limit) = (be(directory + 16), be(directory + 28), be(directory + 32));
        let page = 1usize << bytes[directory + 39];
        return Some((0..slots).all(|slot| {
            let content = &bytes[slot * page..((slot + 1) * page).min(limit)];
            let stored = &bytes[directory + hashes + slot * 32..directory + hashes + slot * 32 + 32];
            sha2::Sha256::digest(content).as_slice() == stored
        }));
    }
    Some(false)
}

/// This machine's platform as archives name it.
pub(crate) fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux-arm64",
        _ => "linux-amd64",
    }
}

/// The target `dist` builds for this machine (its CLI runs here).
pub(crate) fn host_triple() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-musl",
        _ => "x86_64-unknown-linux-musl",
    }
}

/// Every file under `dir` with its bytes: what "left as it was" is checked against.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        found.push((path.clone(), std::fs::read(&path).unwrap()));
    }
    found.sort();
    found
}

fn out_with_a_previous_release() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("dist");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("stigmer-v1.0.0-linux-amd64.tar.gz"), "an older release").unwrap();
    std::fs::write(out.join("notes.txt"), "kept").unwrap();
    (temp, out)
}

#[test]
fn bad_input_is_refused_and_leaves_the_out_directory_as_it_was() {
    let (_temp, out) = out_with_a_previous_release();
    let before = contents(&out);
    let sh = shell();

    let unknown = run_err(cmd!(sh, "{XTASK} dist --target x86_64-pc-windows-msvc --out {out}"));
    assert!(
        unknown.contains(
            "unsupported target \"x86_64-pc-windows-msvc\": supported are aarch64-apple-darwin, \
                          x86_64-apple-darwin, x86_64-unknown-linux-musl, aarch64-unknown-linux-musl, \
                          x86_64-pc-windows-gnu"
        ),
        "{unknown}"
    );

    let mixed = run_err(cmd!(sh, "{XTASK} dist --version 1.2.3 --out {out}"));
    assert!(
        mixed.contains("holds archives of another version (stigmer-v1.0.0-linux-amd64.tar.gz)"),
        "{mixed}"
    );

    let digest = run_err(cmd!(sh, "{XTASK} dist --image-digest sha256:abc --out {out}"));
    assert!(digest.contains("is not a digest"), "{digest}");

    // Without cargo-zigbuild on PATH a cross target names what to install.
    let cargo_bin = Path::new(&std::env::var("CARGO").unwrap()).parent().unwrap().to_path_buf();
    let path = format!("{}:/usr/bin:/bin", cargo_bin.display());
    let no_zig = run_err(
        cmd!(sh, "{XTASK} dist --target aarch64-unknown-linux-musl --version 1.0.0 --out {out}")
            .env("PATH", path),
    );
    assert!(
        no_zig.contains(
            "needs a cross linker: install cargo-zigbuild and zig (`bash ci/setup.sh`, or `pip install` the \
             versions its pip_tools pins)"
        ),
        "{no_zig}"
    );

    assert_eq!(contents(&out), before, "a refused dist changed {}", out.display());
    let siblings: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(siblings.len(), 1, "a staging directory was left behind");
}

#[test]
fn checksums_gathers_archives_built_on_separate_runners() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    for (platform, extension) in
        [("linux-amd64", "tar.gz"), ("darwin-arm64", "tar.gz"), ("windows-amd64", "zip")]
    {
        std::fs::write(dir.join(format!("stigmer-v2.0.0-{platform}.{extension}")), platform).unwrap();
    }
    std::fs::write(dir.join("RELEASE_NOTES.md"), "not an archive").unwrap();
    // No archive `dist` makes: Windows is a zip, and the others tarballs.
    std::fs::write(dir.join("stigmer-v2.0.0-windows-amd64.tar.gz"), "not ours").unwrap();
    std::fs::write(dir.join("stigmer-v2.0.0-linux-amd64.zip"), "not ours").unwrap();
    let sh = shell();
    run_ok(cmd!(sh, "{XTASK} checksums {dir}"));
    let sums = std::fs::read_to_string(dir.join("checksums.txt")).unwrap();
    // The installer's bytes change with every edit of install.sh.
    let installer = cmd!(sh, "sha256sum {dir}/install.sh").read().unwrap();
    let installer = installer.split_whitespace().next().unwrap();
    insta::assert_snapshot!(sums.replace(installer, "[sha256 of install.sh]"));
    sh.change_dir(dir);
    run_ok(cmd!(sh, "sha256sum --check --strict checksums.txt"));

    std::fs::write(dir.join("stigmer-v1.9.0-linux-arm64.tar.gz"), "old").unwrap();
    let mixed = run_err(cmd!(sh, "{XTASK} checksums {dir}"));
    assert!(mixed.contains("holds archives of several versions"), "{mixed}");
}

/// This machine's archive (the others hold the same generated files: they come from the
/// CLI's clap definition, not from running its binary): bash completes from its script,
/// and `man` renders every page without a warning.
#[test]
fn every_archive_holds_completions_that_bash_uses_and_man_pages_that_render() {
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("dist");
    let sh = shell();
    let triple = host_triple();
    run_ok(cmd!(sh, "{XTASK} dist --target {triple} --version 1.2.3 --out {out}"));
    let archive = out.join(format!("stigmer-v1.2.3-{}.tar.gz", host_platform()));
    let date = cmd!(sh, "git log -1 --format=%ct").read().unwrap();
    insta::assert_snapshot!(listing(&archive)
        .replace(host_platform(), "[platform]")
        .replace(&date, "[commit time]"));

    let unpacked = temp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run_ok(cmd!(sh, "tar -xzf {archive} -C {unpacked} --strip-components=1"));

    // What bash does on Tab after `stigmer server st`: the function `complete -p` names,
    // called with the words so far.
    let complete = r#"
        source "$1" || exit 1
        function=$(complete -p stigmer | sed -E 's/.* -F ([^ ]+) .*/\1/')
        COMP_WORDS=(stigmer server st)
        COMP_CWORD=2
        COMP_LINE="stigmer server st"
        COMP_POINT=${#COMP_LINE}
        "$function" stigmer st server
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let script = unpacked.join("completions/stigmer.bash");
    let offered = run_ok(cmd!(sh, "bash --norc --noprofile -c {complete} bash {script}"));
    let mut offered: Vec<&str> = offered.split_whitespace().collect();
    offered.sort_unstable();
    assert_eq!(offered, ["start", "status", "stop"]);

    assert!(
        test_support::on_path("man"),
        "man is not on PATH: `apt-get install man-db` (or `bash ci/setup.sh`)"
    );
    for page in ["stigmer", "stigmer-server", "stigmer-server-start", "stigmer-server-status"] {
        let path = unpacked.join(format!("man/{page}.1"));
        let output = cmd!(sh, "man --warnings -l {path}")
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let rendered = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && stderr.is_empty(), "man -l {page}.1: {stderr}");
        assert!(rendered.contains("SYNOPSIS") && rendered.contains("stigmer 1.2.3"), "{page}.1:\n{rendered}");
    }
}
