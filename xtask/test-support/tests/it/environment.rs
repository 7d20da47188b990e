use serde_json::Value;
use test_support::{
    base_image::ARCHES,
    engine::{image_architecture, require_engine, ImageGuard},
    registry::TestRegistry,
    shell,
};
use xshell::cmd;

#[test]
fn multi_arch_images_round_trip_through_an_authenticated_registry() {
    require_engine();
    let registry = TestRegistry::start_with_auth();
    let sh = shell();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY hello.txt /hello.txt\n").unwrap();
    std::fs::write(context.path().join("hello.txt"), "hello from the test environment\n").unwrap();
    let context = context.path();
    let config = registry.docker_config();
    let creds = &registry.skopeo_creds();
    let mut images = ImageGuard::new(Vec::<String>::new());

    for arch in ARCHES {
        let reference = format!("{}:{arch}", registry.repository("env-check"));
        let platform = format!("linux/{arch}");
        images.push(&reference);
        // --no-cache: the legacy builder's cache ignores --platform, so a `FROM scratch`
        // build for arm64 would silently reuse the amd64 image built just before.
        cmd!(sh, "docker build --quiet --no-cache --platform {platform} --tag {reference} {context}")
            .quiet()
            .run()
            .unwrap();
        assert_eq!(image_architecture(&reference).unwrap(), arch);
        cmd!(sh, "docker --config {config} push --quiet {reference}").quiet().run().unwrap();

        let remote = format!("docker://{reference}");
        let raw =
            cmd!(sh, "skopeo inspect --raw --tls-verify=false {creds...} {remote}").quiet().read().unwrap();
        let manifest: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
        assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1), "{raw}");

        let inspected =
            cmd!(sh, "skopeo inspect --tls-verify=false {creds...} {remote}").quiet().read().unwrap();
        let inspected: Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(inspected["Architecture"], arch, "{inspected:#}");
        assert_eq!(inspected["Os"], "linux");
    }

    // The auth is real: without credentials the same registry refuses.
    let remote = format!("docker://{}:amd64", registry.repository("env-check"));
    let refused = cmd!(sh, "skopeo inspect --raw --tls-verify=false --no-creds {remote}")
        .quiet()
        .ignore_status()
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("unauthorized") || stderr.contains("authentication required"), "{stderr}");
}

#[test]
fn a_restarted_registry_keeps_its_storage_and_port() {
    require_engine();
    let mut registry = TestRegistry::start();
    let sh = shell();
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    std::fs::write(context.path().join("f"), "restart\n").unwrap();
    let context = context.path();
    let reference = format!("{}:kept", registry.repository("restart-check"));
    let _images = ImageGuard::new([reference.clone()]);
    cmd!(sh, "docker build --quiet --platform linux/amd64 --tag {reference} {context}")
        .quiet()
        .run()
        .unwrap();
    cmd!(sh, "docker push --quiet {reference}").quiet().run().unwrap();

    registry.stop();
    let remote = format!("docker://{reference}");
    let while_down =
        cmd!(sh, "skopeo inspect --raw --tls-verify=false {remote}").quiet().ignore_stderr().run();
    assert!(while_down.is_err(), "the registry still answered after stop()");

    registry.restart();
    cmd!(sh, "skopeo inspect --raw --tls-verify=false {remote}").quiet().read().unwrap();
}
