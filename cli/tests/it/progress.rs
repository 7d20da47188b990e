//! Pull progress as `docker pull` shows it: a line per layer, redrawn on a terminal, and
//! a plain line per layer state anywhere else.

use std::io::Read;

use serde_json::Value;
use test_support::{
    engine::{Engine, ImageGuard},
    registry::TestRegistry,
    shell, unique_name,
};
use xshell::cmd;

use crate::{run, run_ok, text, Instance};

/// A pull to watch: an agent-runner image in its own registry with one layer the engine
/// does not have (noise, so that the engine reports its download and extraction in many
/// steps) over the agent-runner test image's layers, which it has, and an instance that
/// runs it.
struct Pull {
    _registry: TestRegistry,
    _image: ImageGuard,
    image: String,
    /// The new layer's short id as the engine names it in a pull: the blob digest's first 12.
    layer: String,
    instance: Instance,
}

impl Pull {
    fn new() -> Pull {
        let registry = TestRegistry::start();
        let sh = shell();
        let base = test_support::base_image::agent_runner_image(env!("CARGO_PKG_VERSION"));
        let context = tempfile::tempdir().unwrap();
        let mut noise = Vec::new();
        std::fs::File::open("/dev/urandom").unwrap().take(8 << 20).read_to_end(&mut noise).unwrap();
        std::fs::write(context.path().join("noise.bin"), noise).unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {base}\nCOPY noise.bin /opt/noise.bin\n"),
        )
        .unwrap();
        let name = unique_name("agent-runner-progress");
        let image = format!("{}:v1", registry.repository(&name));
        let guard = ImageGuard::new([image.clone()]);
        let context = context.path();
        cmd!(sh, "docker build --quiet --tag {image} {context}").quiet().ignore_stdout().run().unwrap();
        cmd!(sh, "docker push --quiet {image}").quiet().ignore_stdout().run().unwrap();
        // The new layer leaves the engine with the image, whose parent is the tagged base.
        // --no-prune: had another test moved the base's tag meanwhile, a prune would take
        // the agent-runner build's cached steps with it, under another test's build
        // ("unable to find image sha256:…" in a `.ci/run`).
        cmd!(sh, "docker image rm --no-prune {image}").quiet().ignore_stdout().run().unwrap();

        let url = format!("http://{}/v2/{name}/manifests/v1", registry.host());
        let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json";
        let manifest: Value =
            serde_json::from_str(&cmd!(sh, "curl -sSf -H {accept} {url}").read().unwrap()).unwrap();
        let digest = manifest["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap();
        let layer = digest.strip_prefix("sha256:").unwrap()[..12].to_owned();

        let mut instance = Instance::without_image(Engine::Docker20);
        instance.image = Some(image.clone());
        Pull { _registry: registry, _image: guard, image, layer, instance }
    }
}

#[test]
fn without_a_terminal_a_pull_prints_a_line_per_layer_state_never_per_byte() {
    // Whole, not taken apart: the registry and the image guard live to the end.
    let pull = Pull::new();
    let (image, layer, instance) = (&pull.image, &pull.layer, &pull.instance);
    let output = run(instance.stigmer(&["server", "start"]));
    let shown = text(&output);
    assert!(output.status.success(), "{shown}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let states: Vec<&str> =
        stderr.lines().filter_map(|line| line.strip_prefix(&format!("{layer}: "))).collect();
    assert_eq!(states.first(), Some(&"Pulling fs layer"), "{shown}");
    assert_eq!(states.last(), Some(&"Pull complete"), "{shown}");
    assert_eq!(states.iter().filter(|s| s.starts_with("Downloading")).count(), 1, "{shown}");
    assert_eq!(states.iter().filter(|s| s.starts_with("Extracting")).count(), 1, "{shown}");
    assert!(states.contains(&"Downloading (8.00 MiB)"), "{shown}");
    // Every layer of the base is there already, and says so.
    let base_layers = stderr.lines().filter(|line| line.ends_with(": Already exists")).count();
    assert!(base_layers > 0, "{shown}");
    assert!(stderr.contains(&format!("pulled {image}")), "{shown}");
}

#[test]
fn on_a_terminal_a_pull_shows_a_line_per_layer() {
    let pull = Pull::new();
    let (layer, instance) = (&pull.layer, &pull.instance);
    // A real terminal: Python's pty module runs stigmer on a pseudo-terminal and copies
    // what it draws to our pipe.
    assert!(test_support::on_path("python3"), "python3 is not on PATH: `apt-get install python3`");
    let sh = shell();
    let stigmer = crate::STIGMER;
    let script = "import pty, sys; pty.spawn(sys.argv[1:])";
    // A terminal that draws: with TERM=dumb (or none) indicatif draws no bars at all.
    let drawn =
        run_ok(instance.env(cmd!(sh, "python3 -c {script} {stigmer} server start").env("TERM", "xterm")));
    assert!(drawn.contains(&format!("{layer}: Pull complete")), "{drawn}");
    // The bar form, not the plain lines.
    assert!(!drawn.contains(&format!("{layer}: Downloading (")), "{drawn}");
    assert!(drawn.contains("agent-runner is healthy after"), "{drawn}");
}
