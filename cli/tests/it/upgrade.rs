//! A user's upgrade, tried as a user would: two released CLIs, each pinned to its own
//! agent-runner by digest, and a developer's unstamped CLI beside them.

use serde_json::Value;
use test_support::{engine::Engine, registry::TestRegistry, shell};
use xshell::cmd;

use crate::{run_ok, Instance};

/// The stamp's format, the CLI's own file (xtask's `dist` compiles it the same way).
#[path = "../../src/stamp.rs"]
mod stamp;

/// A `stigmer` stamped as `cargo xtask dist` stamps a release: `version`, pinned to
/// `digest`, written into a copy of this test build's binary after linking.
fn released_cli(dir: &std::path::Path, version: &str, digest: &str) -> std::path::PathBuf {
    let mut binary = std::fs::read(crate::STIGMER).unwrap();
    let stamp = stamp::Stamp {
        version: version.to_owned(),
        revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        date: "2026-12-04T00:00:00Z".to_owned(),
        image_digest: Some(digest.to_owned()),
    };
    stamp::write(&mut binary, &stamp).unwrap();
    let path = dir.join(format!("stigmer-{version}"));
    std::fs::write(&path, binary).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// Pushes the agent-runner of `version` and returns its digest in `registry`.
fn publish(registry: &TestRegistry, version: &str) -> String {
    let sh = shell();
    let image = test_support::base_image::agent_runner_image(version);
    let published = format!("{}:v{version}", registry.repository("agent-runner"));
    cmd!(sh, "docker tag {image} {published}").run().unwrap();
    cmd!(sh, "docker push --quiet {published}").quiet().ignore_stdout().run().unwrap();
    let format = "{{index .RepoDigests 0}}";
    let reference = cmd!(sh, "docker image inspect --format {format} {published}").read().unwrap();
    cmd!(sh, "docker image rm --no-prune {published}").quiet().ignore_stdout().run().unwrap();
    reference.rsplit_once('@').unwrap().1.to_owned()
}

/// Found by reading `image.rs`: a pull was tagged `<name>:local`, and every later start
/// ran `:local` first, so after upgrading from 9.0.0 to 9.1.0 the agent-runner stayed
/// 9.0.0 (and the CLI told a Homebrew user to run `cargo xtask image --local`).
#[test]
fn an_upgraded_cli_runs_its_own_release_and_a_developers_runs_the_local_build() {
    let engine = Engine::Docker20;
    let registry = TestRegistry::start();
    let (a, b) = (publish(&registry, "9.0.0"), publish(&registry, "9.1.0"));
    let clis = tempfile::tempdir().unwrap();
    let (old, new) = (released_cli(clis.path(), "9.0.0", &a), released_cli(clis.path(), "9.1.0", &b));
    let instance = Instance::without_image(engine);
    let host = registry.host();
    let pinned = |digest: &str| format!("{host}/agent-runner@{digest}");
    let _pulled = test_support::engine::ImageGuard::new([pinned(&a), pinned(&b)]).also_on(engine);
    let status = |cli: &std::path::Path| -> Value {
        let output = run_ok(
            instance.env(cmd!(instance.sh, "{cli} server status --json")).env("STIGMER_REGISTRY", &host),
        );
        serde_json::from_str(&output).unwrap()
    };

    run_ok(instance.env(cmd!(instance.sh, "{old} server start")).env("STIGMER_REGISTRY", &host));
    assert_eq!(status(&old)["version"], "9.0.0");
    assert_eq!(status(&old)["image"], pinned(&a).as_str());

    // The upgrade: the new CLI sees the old agent-runner and says how to switch.
    let seen = status(&new);
    assert_eq!(seen["image_current"], false, "{seen}");
    let said = run_ok(instance.env(cmd!(instance.sh, "{new} server start")).env("STIGMER_REGISTRY", &host));
    assert!(said.contains("switch with `stigmer server stop && stigmer server start`"), "{said}");
    run_ok(instance.env(cmd!(instance.sh, "{new} server stop")));
    run_ok(instance.env(cmd!(instance.sh, "{new} server start")).env("STIGMER_REGISTRY", &host));
    let upgraded = status(&new);
    assert_eq!(upgraded["version"], "9.1.0", "{upgraded}");
    assert_eq!(upgraded["image"], pinned(&b).as_str());
    assert_eq!(upgraded["image_current"], true);
    run_ok(instance.env(cmd!(instance.sh, "{new} server stop")));

    // A developer's CLI (unstamped) runs what `cargo xtask image --local` built.
    let local = format!("{}:local", instance.name);
    let built = test_support::base_image::agent_runner_image(env!("CARGO_PKG_VERSION"));
    cmd!(instance.sh, "docker tag {built} {local}").run().unwrap();
    run_ok(instance.stigmer(&["server", "start"]));
    let developer: Value =
        serde_json::from_str(&run_ok(instance.stigmer(&["server", "status", "--json"]))).unwrap();
    assert_eq!(developer["image"], local.as_str(), "{developer}");
    // ...and the released one still runs its own digest, whatever `:local` is.
    run_ok(instance.stigmer(&["server", "stop"]));
    run_ok(instance.env(cmd!(instance.sh, "{new} server start")).env("STIGMER_REGISTRY", &host));
    assert_eq!(status(&new)["image"], pinned(&b).as_str());
}
