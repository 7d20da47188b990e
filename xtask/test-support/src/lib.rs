//! The real test environment shared by the workspace's integration tests and by
//! `cargo xtask test`/`bench`: a Docker Engine that must already run, the second engine
//! and private Docker config the buildx builder runs on (with a test SBOM scanner),
//! per-test OCI registries, test base images built from Debian packages, throwaway
//! git repositories with a bare remote, and Wine for the Windows CLI.
//!
//! Nothing here fakes a part: every helper starts or drives the real program. Helpers
//! panic with what to install or run when a part is missing, because a test that
//! skips silently proves nothing.

pub mod base_image;
pub mod buildx;
pub mod cosign;
pub mod engine;
pub mod git;
pub mod github;
pub mod registry;
pub mod wine;

use std::path::PathBuf;

/// The workspace root, where `Cargo.toml`, `agent-runner/` and `ci/` live.
pub fn project_root() -> PathBuf {
    let test_support = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    test_support.ancestors().nth(2).expect("xtask/test-support sits two levels deep").to_path_buf()
}

/// This checkout's cargo target directory, which the tests hand to the xtask runs they
/// make in other projects (`CARGO_TARGET_DIR`): xtask's caches there (compressed
/// layers, prepared dependencies) and the CLI's dependency builds are made once for the
/// suite, not once per throwaway project.
pub fn target_dir() -> PathBuf {
    project_root().join("target")
}

/// A shell for tests; its working directory is the workspace root.
pub fn shell() -> xshell::Shell {
    let sh = xshell::Shell::new().expect("creating a shell");
    sh.change_dir(project_root());
    sh
}

/// A name no other test of this run uses (image tags, container names), so that
/// parallel tests never touch each other's things.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Runs `cmd` with its output captured, and on failure returns an error carrying the
/// last lines of that output: long-winded tools (debootstrap, docker build) stay
/// quiet when they work and explain themselves when they do not.
pub fn run_captured(cmd: xshell::Cmd<'_>, what: &str) -> anyhow::Result<String> {
    let output = cmd.ignore_status().quiet().output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let tail = tail[tail.len().saturating_sub(30)..].join("\n");
    anyhow::bail!("{what} failed ({}); last lines of its output:\n{tail}", output.status)
}

/// Points `<cargo_target>/dist` and `/dist-custom-profile`, where `cargo xtask dist`
/// builds under that target directory, at this checkout's, as a runner's cache would hand builds
/// over: dist's flags name no checkout, so another checkout's CLI builds reuse the
/// suite's dependency builds instead of compiling all four targets again (minutes each,
/// cold), and dist's lock keeps concurrent builds apart.
pub fn share_dist_builds(cargo_target: &std::path::Path) {
    std::fs::create_dir_all(cargo_target).expect("creating the target directory");
    // dist's two directories (xtask's `dist::DIST_DIRS`): as shipped, and the tests' profile.
    for name in ["dist", "dist-custom-profile"] {
        let shared = target_dir().join(name);
        std::fs::create_dir_all(&shared).expect("creating the shared dist directory");
        let link = cargo_target.join(name);
        if !link.is_symlink() {
            let _ = std::fs::remove_dir_all(&link);
            std::os::unix::fs::symlink(&shared, &link).expect("linking the shared dist builds");
        }
    }
}

/// `cmd` without the variables `cargo run` and `cargo test` set for this process
/// (CARGO_MANIFEST_DIR, CARGO_PKG_*, ...), as a shell would run it: ring's build script
/// reruns when they change, and rustls, reqwest and xtask after it, so a `cargo` run
/// with them rebuilds those (20 s), and the next `cargo` from a shell rebuilds them again.
pub fn as_a_shell_runs_it(mut cmd: xshell::Cmd<'_>) -> xshell::Cmd<'_> {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let prefixes = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_"];
        if prefixes.iter().any(|prefix| name.starts_with(prefix)) {
            cmd = cmd.env_remove(&*name);
        }
    }
    cmd
}
