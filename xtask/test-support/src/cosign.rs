//! cosign key pairs for tests: a release signed with a key (`--cosign-key`) and checked
//! with its public half (`verify-release --key`), as keyless signing needs GitHub's
//! OIDC token and sigstore's services, which tests cannot reach.

use std::path::PathBuf;

use xshell::cmd;

/// The password of every test key (`COSIGN_PASSWORD`).
pub const PASSWORD: &str = "stigmer-test-key";

/// A key pair made by `cosign generate-key-pair` in its own directory, removed on drop.
pub struct KeyPair {
    _dir: tempfile::TempDir,
    /// The encrypted private key (`cosign.key`).
    pub key: PathBuf,
    /// The public key (`cosign.pub`).
    pub public: PathBuf,
}

impl KeyPair {
    pub fn generate() -> KeyPair {
        assert!(
            crate::on_path("cosign"),
            "cosign is not on PATH: run `bash ci/setup.sh` (it unpacks Debian 13's cosign), or install cosign 2"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let sh = crate::shell();
        sh.change_dir(dir.path());
        cmd!(sh, "cosign generate-key-pair")
            .env("COSIGN_PASSWORD", PASSWORD)
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .expect("cosign generate-key-pair");
        KeyPair { key: dir.path().join("cosign.key"), public: dir.path().join("cosign.pub"), _dir: dir }
    }
}
