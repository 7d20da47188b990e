//! cosign, as a release uses it: sign the verified index by digest and checksums.txt
//! (a standard Sigstore bundle beside it), and the checks `verify-release` runs on both. Keyless
//! in GitHub Actions (Fulcio and Rekor, from the job's OIDC token); with a key pair
//! (`cosign generate-key-pair`, password in `COSIGN_PASSWORD`) locally and in tests,
//! where nothing is uploaded to a transparency log (`--tlog-upload=false`).
//!
//! Owns the cosign command lines only; it decides nothing about when to sign (that is
//! `publish.rs` and `checksums.rs`) and never reads credentials itself: a registry login
//! reaches cosign through the Docker config the caller hands it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

/// The bundle `checksums --cosign-key/--keyless` writes beside checksums.txt, uploaded
/// as a release asset.
pub(crate) const CHECKSUMS_BUNDLE: &str = "checksums.txt.sigstore.json";

/// How a release signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Signer {
    /// A cosign private key; no transparency log.
    Key(PathBuf),
    /// A certificate from Fulcio for the workflow's OIDC identity, logged in Rekor.
    Keyless,
}

impl Signer {
    /// From the `--cosign-key FILE` / `--keyless` pair of flags.
    pub(crate) fn from_flags(key: Option<PathBuf>, keyless: bool) -> Option<Signer> {
        match (key, keyless) {
            (Some(key), _) => Some(Signer::Key(key)),
            (None, true) => Some(Signer::Keyless),
            (None, false) => None,
        }
    }

    /// What the plans print.
    pub(crate) fn describe(&self) -> String {
        match self {
            Signer::Key(key) => format!("cosign key {} (no transparency log)", key.display()),
            Signer::Keyless => "cosign keyless (this workflow's OIDC identity, logged in Rekor)".to_owned(),
        }
    }

    fn args(&self) -> Vec<String> {
        match self {
            Signer::Key(key) => vec!["--key".into(), key.display().to_string(), "--tlog-upload=false".into()],
            Signer::Keyless => Vec::new(),
        }
    }
}

/// Whose signature a check accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verifier {
    /// A cosign public key (signatures made with `Signer::Key`: no transparency log).
    Key(PathBuf),
    /// A keyless signature whose certificate names this identity and OIDC issuer.
    Identity { identity: String, issuer: String },
}

impl Verifier {
    pub(crate) fn describe(&self) -> String {
        match self {
            Verifier::Key(key) => format!("the public key {}", key.display()),
            Verifier::Identity { identity, issuer } => format!("{identity} (issuer {issuer})"),
        }
    }

    fn args(&self) -> Vec<String> {
        match self {
            Verifier::Key(key) => {
                vec!["--key".into(), key.display().to_string(), "--insecure-ignore-tlog".into()]
            }
            Verifier::Identity { identity, issuer } => vec![
                "--certificate-identity".into(),
                identity.clone(),
                "--certificate-oidc-issuer".into(),
                issuer.clone(),
            ],
        }
    }
}

/// cosign speaks plain HTTP only to a registry on this machine (the tests' registries),
/// as the OCI client does (`oci.rs`).
fn registry_args(reference: &str) -> Option<&'static str> {
    let registry = reference.split('/').next().unwrap_or_default();
    crate::registry::oci::is_loopback(registry).then_some("--allow-insecure-registry")
}

/// Refuses, before anything is built or pushed, a signer that cannot sign here: no
/// cosign, or a key that cosign cannot open (a missing file, a wrong COSIGN_PASSWORD).
pub(crate) fn check_signer(sh: &Shell, signer: &Signer) -> anyhow::Result<()> {
    let output = match signer {
        Signer::Key(key) => cmd!(sh, "cosign public-key --key {key}").quiet().ignore_status().output(),
        Signer::Keyless => cmd!(sh, "cosign version").quiet().ignore_status().output(),
    }
    .context("running cosign: install cosign 2 (Debian 13 packages it; ci/setup.sh unpacks it)")?;
    match (output.status.success(), signer) {
        (true, _) => Ok(()),
        (false, Signer::Key(key)) => bail!(
            "cosign cannot open the key {}: {} (set COSIGN_PASSWORD to its password); nothing was built or pushed",
            key.display(),
            failure(&output)
        ),
        (false, Signer::Keyless) => bail!("cosign does not run: {}; install cosign 2", failure(&output)),
    }
}

/// Whose signature `signer` makes for the release `tag`: the public half of a key, or
/// the keyless identity of the release workflow at that tag (`release_identity`). What
/// a rerun checks before it signs again, and what a published version must carry to be
/// reused. The directory holds the public key while it is used.
pub(crate) fn own_verifier(
    sh: &Shell,
    signer: &Signer,
    tag: &str,
) -> anyhow::Result<(Option<tempfile::TempDir>, Verifier)> {
    let key = match signer {
        Signer::Key(key) => key,
        Signer::Keyless => {
            let repository = sh.var("GITHUB_REPOSITORY").unwrap_or_else(|_| "stigmer/stigmer".to_owned());
            return Ok((None, release_identity(&repository, tag, GITHUB_ISSUER)));
        }
    };
    let dir = tempfile::tempdir()?;
    let public = dir.path().join("cosign.pub");
    cmd!(sh, "cosign public-key --key {key} --outfile {public}").quiet().run().with_context(|| {
        format!("reading the public half of {} (is COSIGN_PASSWORD right?)", key.display())
    })?;
    Ok((Some(dir), Verifier::Key(public)))
}

/// The OIDC issuer of GitHub Actions' tokens.
pub(crate) const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The keyless identity of `repository`'s release workflow run for `tag`.
pub(crate) fn release_identity(repository: &str, tag: &str, issuer: &str) -> Verifier {
    Verifier::Identity {
        identity: format!("https://github.com/{repository}/.github/workflows/release.yml@refs/tags/{tag}"),
        issuer: issuer.to_owned(),
    }
}

/// `cmd` reading the registry login from `docker_config` when given (else the user's).
fn with_login<'a>(cmd: xshell::Cmd<'a>, docker_config: Option<&Path>) -> xshell::Cmd<'a> {
    match docker_config {
        Some(config) => cmd.env("DOCKER_CONFIG", config),
        None => cmd,
    }
}

/// Signs `reference` (`REPO@sha256:...`: by digest, never a tag that could move);
/// cosign reads the registry login from `docker_config` when given.
pub(crate) fn sign_image(
    sh: &Shell,
    signer: &Signer,
    reference: &str,
    docker_config: Option<&Path>,
) -> anyhow::Result<()> {
    let (args, insecure) = (signer.args(), registry_args(reference));
    with_login(cmd!(sh, "cosign sign --yes {args...} {insecure...} {reference}"), docker_config)
        .run()
        .with_context(|| {
            format!("signing {reference} with cosign (install cosign 2, and for a key set COSIGN_PASSWORD)")
        })
}

/// Attaches `predicate` to `reference` as a signed in-toto attestation of `kind`
/// (`spdxjson`, `slsaprovenance1`), stored beside the image (`sha256-<digest>.att`).
pub(crate) fn attest_image(
    sh: &Shell,
    signer: &Signer,
    reference: &str,
    kind: &str,
    predicate: &Path,
    docker_config: Option<&Path>,
) -> anyhow::Result<()> {
    let (args, insecure) = (signer.args(), registry_args(reference));
    let attest = cmd!(
        sh,
        "cosign attest --yes {args...} {insecure...} --type {kind} --predicate {predicate} {reference}"
    );
    with_login(attest, docker_config)
        .run()
        .with_context(|| format!("attaching the {kind} attestation to {reference} with cosign"))
}

/// The media type of the standard Sigstore bundle (sigstore/protobuf-specs), what
/// sigstore-python, sigstore-go and GitHub's tooling read.
const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Signs `file` into the Sigstore bundle `bundle`. cosign 2 writes its own legacy
/// format unless told `--new-bundle-format` (cosign 3 writes the standard one by default).
pub(crate) fn sign_blob(sh: &Shell, signer: &Signer, file: &Path, bundle: &Path) -> anyhow::Result<()> {
    let args = signer.args();
    cmd!(sh, "cosign sign-blob --yes {args...} --new-bundle-format --bundle {bundle} {file}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| {
            format!(
                "signing {} with cosign (install cosign 2.4 or later, and for a key set COSIGN_PASSWORD)",
                file.display()
            )
        })
}

/// What cosign said when a check failed: its last error line.
fn failure(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .rev()
        .find(|line| line.starts_with("Error:"))
        .or_else(|| stderr.lines().rev().find(|line| !line.trim().is_empty()))
        .unwrap_or("cosign failed and said nothing")
        .trim_start_matches("Error: ")
        .to_owned()
}

fn check(cmd: xshell::Cmd<'_>) -> anyhow::Result<Result<(), String>> {
    let output = cmd.quiet().ignore_status().output().context("running cosign: install cosign 2")?;
    Ok(if output.status.success() { Ok(()) } else { Err(failure(&output)) })
}

/// Whether `bundle` is a Sigstore bundle (`BUNDLE_MEDIA_TYPE`) holding a valid signature
/// of `file` by `verifier`; `Err` inside says why not. cosign's legacy bundle is refused:
/// no release ever shipped one, and it is not what the asset's name promises.
pub(crate) fn verify_blob(
    sh: &Shell,
    verifier: &Verifier,
    file: &Path,
    bundle: &Path,
) -> anyhow::Result<Result<(), String>> {
    let text = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    if let Err(why) = bundle_format(&text) {
        return Ok(Err(why));
    }
    let args = verifier.args();
    // cosign reads a Sigstore bundle against a trusted root: Sigstore's, from its TUF
    // repository, unless one is given. A key signature has no certificate, log entry or
    // timestamp to check, so it gets a root that trusts none: only the key verifies it,
    // and nothing is fetched.
    let root = tempfile::tempdir()?;
    let trusted_root: Vec<String> = match verifier {
        Verifier::Key(_) => {
            let path = root.path().join("trusted_root.json");
            std::fs::write(&path, EMPTY_TRUSTED_ROOT)?;
            vec!["--trusted-root".into(), path.display().to_string()]
        }
        Verifier::Identity { .. } => Vec::new(),
    };
    check(cmd!(
        sh,
        "cosign verify-blob {args...} --new-bundle-format {trusted_root...} --bundle {bundle} {file}"
    ))
}

/// A Sigstore trusted root with no certificate authority, log or timestamp authority.
const EMPTY_TRUSTED_ROOT: &str =
    r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#;

/// `Ok` when `bundle` is a standard Sigstore bundle; `Err` names what it is instead.
fn bundle_format(bundle: &[u8]) -> Result<(), String> {
    let json: serde_json::Value =
        serde_json::from_slice(bundle).map_err(|err| format!("{CHECKSUMS_BUNDLE} is not JSON: {err}"))?;
    match json.get("mediaType").and_then(|t| t.as_str()) {
        Some(BUNDLE_MEDIA_TYPE) => Ok(()),
        Some(other) => Err(format!("{CHECKSUMS_BUNDLE} has media type {other}, not {BUNDLE_MEDIA_TYPE}")),
        None if json.get("base64Signature").is_some() => Err(format!(
            "{CHECKSUMS_BUNDLE} is cosign's legacy bundle, not a Sigstore bundle ({BUNDLE_MEDIA_TYPE}): \
             sign checksums.txt again with `cargo xtask checksums DIR --cosign-key KEY` (or --keyless)"
        )),
        None => Err(format!("{CHECKSUMS_BUNDLE} is not a Sigstore bundle: it has no mediaType")),
    }
}

/// Whether `reference` carries a signature by `verifier`.
pub(crate) fn verify_image(
    sh: &Shell,
    verifier: &Verifier,
    reference: &str,
    docker_config: Option<&Path>,
) -> anyhow::Result<Result<(), String>> {
    let (args, insecure) = (verifier.args(), registry_args(reference));
    check(with_login(cmd!(sh, "cosign verify {args...} {insecure...} {reference}"), docker_config))
}

/// Whether `reference` carries an attestation of `kind` signed by `verifier`.
pub(crate) fn verify_attestation(
    sh: &Shell,
    verifier: &Verifier,
    reference: &str,
    kind: &str,
    docker_config: Option<&Path>,
) -> anyhow::Result<Result<(), String>> {
    let (args, insecure) = (verifier.args(), registry_args(reference));
    let verify = cmd!(sh, "cosign verify-attestation {args...} {insecure...} --type {kind} {reference}");
    check(with_login(verify, docker_config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_registry_on_this_machine_is_spoken_to_in_plain_http() {
        assert_eq!(registry_args("127.0.0.1:5000/agent-runner@sha256:ab"), Some("--allow-insecure-registry"));
        assert_eq!(registry_args("localhost:5000/agent-runner@sha256:ab"), Some("--allow-insecure-registry"));
        assert_eq!(registry_args("ghcr.io/stigmer/agent-runner@sha256:ab"), None);
        assert_eq!(registry_args("127.0.0.1.example.com/agent-runner@sha256:ab"), None);
    }

    #[test]
    fn only_a_sigstore_bundle_is_read_as_one() {
        let standard = format!(r#"{{"mediaType":"{BUNDLE_MEDIA_TYPE}","messageSignature":{{}}}}"#);
        assert_eq!(bundle_format(standard.as_bytes()), Ok(()));
        let legacy = bundle_format(br#"{"base64Signature":"MEUC"}"#).unwrap_err();
        assert!(legacy.contains("is cosign's legacy bundle, not a Sigstore bundle"), "{legacy}");
        let older = bundle_format(br#"{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.2"}"#);
        assert!(older
            .unwrap_err()
            .contains("has media type application/vnd.dev.sigstore.bundle+json;version=0.2"));
        assert!(bundle_format(b"{}").unwrap_err().contains("it has no mediaType"));
        assert!(bundle_format(b"not json").unwrap_err().contains("is not JSON"));
    }
}
