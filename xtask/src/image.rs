//! `cargo xtask image`: builds the agent-runner image. `--local` builds one platform
//! into the local engine and tags it `stigmer-agent-runner:local` and `:vX.Y.Z`, the
//! names the `stigmer` CLI looks for first.

use std::time::Instant;

use anyhow::{bail, Context};
use xshell::Shell;

use crate::{
    engine::{BuildRequest, Engine},
    flags,
    platform::Platform,
    project,
};

impl flags::Image {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let engine = Engine::connect(sh)?;
        let version = project::workspace_version(sh)?;
        let platform = self.platform.unwrap_or_else(Platform::host);
        let tags = [format!("{}:local", self.name), format!("{}:v{version}", self.name)];
        let build_args = [
            ("BASE_IMAGE", self.base_image.clone()),
            ("VERSION", version.to_string()),
            ("REVISION", project::git_revision(sh)),
            ("CREATED", project::source_date(sh)?.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ];
        let previous = engine.inspect(sh, &tags[0])?;
        let base = engine.inspect(sh, &self.base_image)?;

        eprintln!(
            "==> building {} for {platform} from {} with {}",
            tags[0],
            self.base_image,
            engine.program()
        );
        let started = Instant::now();
        let context = project::root().join("agent-runner");
        let id = engine
            .build(sh, &BuildRequest { context: &context, platform, tags: &tags, build_args: &build_args })?;
        let elapsed = started.elapsed();
        let built = engine.inspect(sh, &id)?.context("the image just built is not in the engine")?;
        if built.architecture != platform.arch() {
            bail!(
                "the image was built for {platform} but its config says {}: the engine reused an image \
                 of another platform (the legacy builder's cache ignores --platform). Remove it with \
                 `docker image rm {}` and build again",
                built.architecture,
                tags[0]
            );
        }

        let layers =
            LayerCount::of(&built.layers, base.as_ref().map(|b| &b.layers[..]), previous.map(|p| p.layers));
        eprintln!("\n==> built {}", tags.join(", "));
        eprintln!("  id        {}", built.id);
        match &base {
            Some(base) => eprintln!(
                "  size      {} ({} over the base {})",
                human_bytes(built.size),
                human_bytes(built.size.saturating_sub(base.size)),
                self.base_image
            ),
            None => eprintln!("  size      {}", human_bytes(built.size)),
        }
        eprintln!("  time      {:.1} s", elapsed.as_secs_f64());
        eprintln!(
            "  layers    {} from the base, {} reused, {} rebuilt",
            layers.from_base, layers.reused, layers.rebuilt
        );
        Ok(())
    }
}

/// How the layers of a new image relate to its base and to the image the same tag
/// named before the build: what a warm rebuild is judged by.
#[derive(Debug, PartialEq)]
struct LayerCount {
    from_base: usize,
    reused: usize,
    rebuilt: usize,
}

impl LayerCount {
    fn of(built: &[String], base: Option<&[String]>, previous: Option<Vec<String>>) -> LayerCount {
        let base = base.unwrap_or_default();
        let previous = previous.unwrap_or_default();
        let from_base = built.iter().filter(|layer| base.contains(layer)).count();
        let reused = built.iter().filter(|layer| !base.contains(layer) && previous.contains(layer)).count();
        LayerCount { from_base, reused, rebuilt: built.len() - from_base - reused }
    }
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_warm_rebuild_counts_only_the_changed_layer_as_rebuilt() {
        let base = layers(&["b1", "b2"]);
        let previous = layers(&["b1", "b2", "venv", "app-old"]);
        let built = layers(&["b1", "b2", "venv", "app-new"]);
        let count = LayerCount::of(&built, Some(&base), Some(previous));
        assert_eq!(count, LayerCount { from_base: 2, reused: 1, rebuilt: 1 });
    }

    #[test]
    fn a_first_build_without_a_local_base_rebuilds_everything() {
        let count = LayerCount::of(&layers(&["a", "b"]), None, None);
        assert_eq!(count, LayerCount { from_base: 0, reused: 0, rebuilt: 2 });
    }

    #[test]
    fn sizes_read_like_docker_prints_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(34_500_000), "34.5 MB");
        assert_eq!(human_bytes(2_040_000_000), "2.04 GB");
    }
}
