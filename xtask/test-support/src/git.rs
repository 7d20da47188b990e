//! Throwaway git repositories with a bare repository as their `origin`, for release
//! tests that tag, push and must leave no trace on failure.

use std::path::{Path, PathBuf};

use tempfile::TempDir;
use xshell::{cmd, Shell};

pub struct TestRepo {
    _dir: TempDir,
    work: PathBuf,
    remote: PathBuf,
}

impl TestRepo {
    /// An empty work tree on branch `main` whose `origin` is an empty bare repository.
    pub fn new() -> TestRepo {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let work = dir.path().join("work");
        let remote = dir.path().join("remote.git");
        let sh = Shell::new().expect("creating a shell");
        cmd!(sh, "git init --quiet --bare --initial-branch=main {remote}").run().expect("git init --bare");
        cmd!(sh, "git init --quiet --initial-branch=main {work}").run().expect("git init");
        sh.change_dir(&work);
        // Local identity: tests must not depend on the machine's global git config.
        cmd!(sh, "git config user.name 'Stigmer Test'").run().expect("git config");
        cmd!(sh, "git config user.email test@stigmer.invalid").run().expect("git config");
        cmd!(sh, "git config commit.gpgsign false").run().expect("git config");
        cmd!(sh, "git config tag.gpgsign false").run().expect("git config");
        cmd!(sh, "git remote add origin {remote}").run().expect("git remote add");
        TestRepo { _dir: dir, work, remote }
    }

    pub fn work(&self) -> &Path {
        &self.work
    }

    pub fn remote(&self) -> &Path {
        &self.remote
    }

    /// A shell whose working directory is the work tree.
    pub fn shell(&self) -> Shell {
        let sh = Shell::new().expect("creating a shell");
        sh.change_dir(&self.work);
        sh
    }

    pub fn write(&self, path: &str, contents: &str) {
        let path = self.work.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).expect("creating parent directories");
        std::fs::write(&path, contents).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    }

    /// Stages everything and commits; returns the new commit's id.
    pub fn commit_all(&self, message: &str) -> String {
        let sh = self.shell();
        cmd!(sh, "git add --all").quiet().run().expect("git add");
        cmd!(sh, "git commit --quiet -m {message}").quiet().run().expect("git commit");
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs git in the work tree and returns its trimmed stdout; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let sh = self.shell();
        cmd!(sh, "git {args...}").quiet().read().unwrap_or_else(|err| panic!("git {args:?}: {err}"))
    }
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}
