//! A second check of `checksums.txt.sigstore.json`, by nothing cosign is built on: the
//! bundle's shape against sigstore/protobuf-specs' JSON schema, and its signature with
//! openssl. sigstore-python (and GitHub's tooling) verify only keyless bundles with a
//! log entry, sigstore-rust's `sigstore-verify` only bundles with a log entry or a
//! timestamp, and the tests can make only key signatures with neither.
//!
//! `xtask/tests/sigstore/Bundle.schema.json` is `gen/jsonschema/schemas/Bundle.schema.json`
//! of https://github.com/sigstore/protobuf-specs at commit
//! 6d2c6781ef4d3c5325413297e6a399f6b28fdf3a, the last before the schemas were removed
//! from the repository (#696), unchanged. Its `oneOf` lists name the protobuf fields
//! (`message_signature`), which no JSON bundle uses (`messageSignature`): the check
//! renames them before validating, else no bundle at all would pass.

use std::path::Path;

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;
use xshell::cmd;

const MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Validates a JSON document against a draft-04 schema, after renaming `required`
/// names from snake_case to the JSON names protobuf gives them.
const VALIDATE: &str = r#"
import json, re, sys, jsonschema
def camel(name):
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
def fix(node):
    if isinstance(node, dict):
        return {k: ([camel(n) for n in v] if k == "required" else fix(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [fix(n) for n in node]
    return node
schema = fix(json.load(open(sys.argv[1])))
jsonschema.Draft4Validator(schema).validate(json.load(open(sys.argv[2])))
"#;

/// Whether `bundle` is a standard Sigstore bundle of a message signature over `blob` by
/// the key `public` (a PEM public key): the schema, the media type, the digest of `blob`,
/// the key's hint and the signature. `Err` says which failed. What it cannot check: a
/// certificate, a log entry or a timestamp (a key bundle here has none), nor anything
/// about the keyless bundles release.yml makes on GitHub.
pub(crate) fn check(bundle: &Path, blob: &Path, public: &Path) -> Result<(), String> {
    let sh = test_support::shell();
    let import = "import jsonschema";
    let importable = cmd!(sh, "python3 -c {import}").quiet().ignore_stderr().run().is_ok();
    assert!(importable, "python3 cannot import jsonschema: pip install jsonschema (ci/setup.sh installs it)");
    let schema = test_support::project_root().join("xtask/tests/sigstore/Bundle.schema.json");
    let validated =
        cmd!(sh, "python3 -c {VALIDATE} {schema} {bundle}").quiet().ignore_status().output().unwrap();
    if !validated.status.success() {
        let stderr = String::from_utf8_lossy(&validated.stderr);
        let why = stderr.lines().rev().find(|l| l.contains("ValidationError")).unwrap_or(&stderr);
        return Err(format!("not valid under protobuf-specs' Bundle.schema.json: {why}"));
    }
    let json: Value = serde_json::from_slice(&std::fs::read(bundle).unwrap()).map_err(|e| e.to_string())?;
    if json["mediaType"] != MEDIA_TYPE {
        return Err(format!("media type {}, not {MEDIA_TYPE}", json["mediaType"]));
    }
    let base64 = base64::engine::general_purpose::STANDARD;
    let signature = &json["messageSignature"];
    let blob_digest = sha2::Sha256::digest(std::fs::read(blob).unwrap());
    if signature["messageDigest"]["algorithm"] != "SHA2_256"
        || signature["messageDigest"]["digest"] != base64.encode(blob_digest)
    {
        return Err(format!(
            "messageDigest {} is not the sha256 of {}",
            signature["messageDigest"],
            blob.display()
        ));
    }
    // cosign's hint: the sha256 of the key's DER form, as sigstore-go computes it.
    let der = cmd!(sh, "openssl pkey -pubin -in {public} -outform DER").quiet().output().unwrap().stdout;
    let hint = &json["verificationMaterial"]["publicKey"]["hint"];
    if *hint != base64.encode(sha2::Sha256::digest(&der)) {
        return Err(format!("the key hint {hint} does not name {}", public.display()));
    }
    let bytes =
        base64.decode(signature["signature"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().unwrap();
    let sig = dir.path().join("signature.der");
    std::fs::write(&sig, bytes).unwrap();
    let verified = cmd!(sh, "openssl dgst -sha256 -verify {public} -signature {sig} {blob}")
        .quiet()
        .ignore_status()
        .output()
        .unwrap();
    if !verified.status.success() {
        return Err(format!(
            "openssl does not verify the signature: {}",
            String::from_utf8_lossy(&verified.stdout).trim()
        ));
    }
    Ok(())
}
