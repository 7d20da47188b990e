//! `cargo xtask verify-image` against indexes made by another tool (`docker manifest`,
//! Docker-typed lists of tiny `FROM scratch` images), damaged on purpose.

use serde_json::Value;
use test_support::{registry::TestRegistry, shell};
use xshell::cmd;

use crate::{run_err, run_ok, XTASK};

/// Pushes a `FROM scratch` image per arch (its content names the arch and `flavour`)
/// and a manifest list of them under `tag`; returns the list's reference. `platforms`
/// pairs each image's real arch with the arch its index entry claims.
fn scratch_index(registry: &TestRegistry, tag: &str, flavour: &str, platforms: &[(&str, &str)]) -> String {
    let sh = shell();
    let config = registry.docker_config();
    let repository = registry.repository("fixture");
    let index = format!("{repository}:{tag}");
    let mut entries: Vec<String> = Vec::new();
    for (position, (arch, _)) in platforms.iter().enumerate() {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
        std::fs::write(context.path().join("f"), format!("{flavour} {arch} {position}\n")).unwrap();
        let (context, platform) = (context.path(), format!("linux/{arch}"));
        let image = format!("{repository}:{tag}-{position}");
        // --no-cache: the legacy builder's cache ignores --platform.
        cmd!(sh, "docker build --quiet --no-cache --platform {platform} --tag {image} {context}")
            .quiet()
            .ignore_stdout()
            .run()
            .unwrap();
        cmd!(sh, "docker --config {config} push --quiet {image}").quiet().ignore_stdout().run().unwrap();
        cmd!(sh, "docker image rm --no-prune {image}").quiet().ignore_stdout().run().unwrap();
        entries.push(image);
    }
    let images = &entries;
    cmd!(sh, "docker --config {config} manifest create --insecure {index} {images...}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    for ((arch, claimed), image) in platforms.iter().zip(&entries) {
        if arch != claimed {
            cmd!(sh, "docker --config {config} manifest annotate --arch {claimed} {index} {image}")
                .run()
                .unwrap();
        }
    }
    cmd!(sh, "docker --config {config} manifest push --insecure --purge {index}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    index
}

fn verify<'a>(sh: &'a xshell::Shell, registry: &TestRegistry, args: &[&str]) -> xshell::Cmd<'a> {
    let config = registry.docker_config();
    cmd!(sh, "{XTASK} verify-image {args...}").env("DOCKER_CONFIG", config)
}

fn raw_manifest(registry: &TestRegistry, reference: &str) -> Value {
    let sh = shell();
    let creds = registry.skopeo_creds();
    let remote = format!("docker://{reference}");
    serde_json::from_str(
        &cmd!(sh, "skopeo inspect --raw --tls-verify=false {creds...} {remote}").read().unwrap(),
    )
    .unwrap()
}

#[test]
fn a_docker_manifest_list_with_both_platforms_passes_with_auth() {
    let registry = TestRegistry::start_with_auth();
    let index = scratch_index(&registry, "v1", "good", &[("amd64", "amd64"), ("arm64", "arm64")]);
    let report: Value =
        serde_json::from_str(&run_ok(verify(&shell(), &registry, &[&index, "--json"]))).unwrap();
    assert_eq!(report["media_type"], "application/vnd.docker.distribution.manifest.list.v2+json");
    let platforms: Vec<&str> =
        report["platforms"].as_array().unwrap().iter().map(|p| p["platform"].as_str().unwrap()).collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(report["attestations"], 0);
    assert!(report["requests"].as_u64().unwrap() > 0);
}

#[test]
fn an_index_missing_arm64_fails_naming_it() {
    let registry = TestRegistry::start();
    let index = scratch_index(&registry, "v1", "amd64-only", &[("amd64", "amd64")]);
    let output = run_err(verify(&shell(), &registry, &[&index]));
    assert!(output.contains("platform linux/arm64 is missing from the index"), "{output}");
}

#[test]
fn an_amd64_config_under_an_arm64_descriptor_fails_naming_it() {
    let registry = TestRegistry::start();
    let index = scratch_index(&registry, "v1", "mislabelled", &[("amd64", "amd64"), ("amd64", "arm64")]);
    let output = run_err(verify(&shell(), &registry, &[&index]));
    assert!(output.contains("the manifest listed as linux/arm64 has a config for linux/amd64"), "{output}");
}

#[test]
fn a_deleted_blob_fails_naming_its_digest() {
    let registry = TestRegistry::start();
    let index = scratch_index(&registry, "v1", "damaged", &[("amd64", "amd64"), ("arm64", "arm64")]);
    let list = raw_manifest(&registry, &index);
    let arm64 =
        list["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == "arm64");
    let manifest_digest = arm64.unwrap()["digest"].as_str().unwrap();
    let manifest = raw_manifest(&registry, &format!("{}@{manifest_digest}", registry.repository("fixture")));
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    std::fs::remove_file(test_support::registry::blob_data_path(&registry.storage(), layer)).unwrap();

    let output = run_err(verify(&shell(), &registry, &[&index]));
    assert!(output.contains(&format!("blob {layer}")), "{output}");
}

#[test]
fn latest_pointing_elsewhere_fails_naming_it() {
    let registry = TestRegistry::start();
    let release = scratch_index(&registry, "v1", "release", &[("amd64", "amd64"), ("arm64", "arm64")]);
    let other = scratch_index(&registry, "latest", "other", &[("amd64", "amd64"), ("arm64", "arm64")]);
    let output = run_err(verify(&shell(), &registry, &[&release, "--same-digest-as", &other]));
    assert!(output.contains(":latest points at sha256:"), "{output}");
}

#[test]
fn attestation_entries_are_reported_but_not_counted_as_platforms() {
    let registry = TestRegistry::start();
    let index = scratch_index(&registry, "v1", "attested", &[("amd64", "amd64"), ("arm64", "arm64")]);
    // Add what buildx adds: an entry for unknown/unknown marked as an attestation.
    let mut list = raw_manifest(&registry, &index);
    let mut attestation = list["manifests"][0].clone();
    attestation["platform"] = serde_json::json!({ "architecture": "unknown", "os": "unknown" });
    attestation["annotations"] = serde_json::json!({ "vnd.docker.reference.type": "attestation-manifest" });
    list["manifests"].as_array_mut().unwrap().push(attestation);
    let body = serde_json::to_string(&list).unwrap();
    let sh = shell();
    let url = format!("http://{}/v2/fixture/manifests/attested", registry.host());
    let content_type = format!("Content-Type: {}", list["mediaType"].as_str().unwrap());
    cmd!(sh, "curl -sS --fail -X PUT -H {content_type} --data-binary @- {url}").stdin(body).run().unwrap();

    let attested = format!("{}:attested", registry.repository("fixture"));
    let table = run_ok(verify(&shell(), &registry, &[&attested]));
    assert!(table.contains("1 attestation manifest(s), not counted as platforms"), "{table}");
}

/// The registry client over TLS, as it talks to ghcr.io: rustls with ring (xtask's one
/// TLS stack) and the system's roots, which `SSL_CERT_FILE` replaces here. A registry
/// on this machine's first non-loopback address (a loopback one is spoken to in plain
/// HTTP), with a certificate for that address: trusted, verify-image gets the
/// registry's own answer; untrusted, it fails on the certificate.
#[test]
fn verify_image_speaks_tls_and_checks_the_certificate() {
    let sh = shell();
    let dir = tempfile::tempdir().unwrap();
    let addresses = cmd!(sh, "hostname -I").read().unwrap();
    let ip = addresses
        .split_whitespace()
        .find(|address| address.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()))
        .unwrap_or_else(|| {
            panic!("this machine has no non-loopback IPv4 address for a TLS registry: {addresses}")
        })
        .to_owned();
    // A CA and a server certificate it signs: webpki refuses a self-signed CA as a server's.
    let path = |name: &str| dir.path().join(name);
    let (ca_key, ca, key, request, cert, extensions) = (
        path("ca.key"),
        path("ca.pem"),
        path("key.pem"),
        path("server.csr"),
        path("cert.pem"),
        path("ext.cnf"),
    );
    std::fs::write(&extensions, format!("basicConstraints=CA:FALSE\nsubjectAltName=IP:{ip}\n")).unwrap();
    for openssl in [
        cmd!(sh, "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=stigmer-test-ca -keyout {ca_key} -out {ca}"),
        cmd!(sh, "openssl req -newkey rsa:2048 -nodes -subj /CN=stigmer-test-registry -keyout {key} -out {request}"),
        cmd!(sh, "openssl x509 -req -in {request} -CA {ca} -CAkey {ca_key} -CAcreateserial -days 1 -extfile {extensions} -out {cert}"),
    ] {
        openssl.quiet().ignore_stderr().run().expect("openssl makes the certificates: apt-get install openssl");
    }
    let port = std::net::TcpListener::bind((ip.as_str(), 0)).unwrap().local_addr().unwrap().port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n\
             http:\n  addr: {ip}:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\n",
            storage = dir.path().join("storage").display(),
            cert = cert.display(),
            key = key.display(),
        ),
    )
    .unwrap();
    let mut registry = std::process::Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker-registry: run `bash ci/setup.sh`");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::net::TcpStream::connect((ip.as_str(), port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the TLS registry did not listen on {ip}:{port}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let image = format!("{ip}:{port}/agent-runner:v0.0.1");
    let trusted = run_err(cmd!(sh, "{XTASK} verify-image {image}").env("SSL_CERT_FILE", &ca));
    let untrusted = run_err(cmd!(sh, "{XTASK} verify-image {image}").env("SSL_CERT_FILE", "/dev/null"));
    registry.kill().unwrap();
    registry.wait().unwrap();
    assert!(trusted.contains(&format!("{ip}:{port}/agent-runner:v0.0.1 does not exist")), "{trusted}");
    assert!(
        untrusted.contains(&format!("{ip}:{port} presented a TLS certificate this machine does not trust")),
        "{untrusted}"
    );
    // Not a transient failure: asked once.
    assert!(!untrusted.contains("retrying"), "{untrusted}");
}
