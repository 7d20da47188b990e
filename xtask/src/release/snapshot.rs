//! `cargo xtask release --snapshot`: every artifact of a release, built locally into
//! dist/, with nothing tagged or published: the agent-runner image into the local
//! engine, CLI tarballs, checksums, release notes and the Homebrew formula. What it
//! cannot make here (no engine, a base image it cannot pull, cross targets without
//! `--all-targets`) it skips, saying why, and makes the rest.

use std::path::Path;

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::{
    build::{engine::Engine, prepare::DependencyPath},
    dist::{self, checksums, Stamp},
    flags,
    image::{self, LocalBuild},
    plan,
    platform::{Platform, Target},
    pointer::Decision,
    project,
    release::{changelog, homebrew, release_notes},
};

pub(crate) fn run(sh: &Shell, flags: &flags::Release) -> anyhow::Result<()> {
    let version = plan::snapshot_version(sh)?;
    eprintln!(
        "==> snapshot {version}: builds every artifact into {}, publishes nothing",
        flags.out.display()
    );
    let mut skipped: Vec<String> = Vec::new();

    let base = project::base_for_build(sh, flags.base_image.as_deref(), None)?;
    let image = local_image(sh, &base)?;
    // What the notes say of the image: built for this platform, or skipped and why.
    let image_skipped = match &image {
        Ok(_) => {
            let others: Vec<String> =
                Platform::ALL.iter().filter(|p| **p != Platform::host()).map(Platform::to_string).collect();
            vec![format!("{}: a snapshot builds this machine's platform only", others.join(", "))]
        }
        Err(reason) => {
            eprintln!("==> skipping the agent-runner image: {reason}");
            skipped.push(format!("agent-runner image: {reason}"));
            vec![format!("agent-runner image: {reason}")]
        }
    };
    let image = image.ok();

    let targets = if flags.all_targets {
        Target::ALL.to_vec()
    } else {
        let Some(host) = Target::host() else {
            bail!("this machine is none of the dist targets: pass --all-targets to cross-build them all");
        };
        skipped.push("CLI for the other targets: pass --all-targets to cross-build them".to_owned());
        vec![host]
    };
    let stamp = Stamp::of_checkout(sh, Some(version.clone()), None)?;
    let out = sh.current_dir().join(&flags.out);
    dist::dist(sh, &targets, &stamp, &out)?;

    // The notes of a snapshot preview what the next release says: the Unreleased section.
    let changelog_text = sh.read_file("CHANGELOG.md").context("reading CHANGELOG.md")?;
    let changes =
        changelog::unreleased(&changelog_text).unwrap_or("\n- (CHANGELOG.md has no Unreleased section)\n");
    let artifacts = checksums::read(&out.join(checksums::CHECKSUMS))?;
    let notes_image = release_notes::Image::Snapshot {
        built: image.as_ref().map(|tag| format!("`{tag}` ({})", Platform::host())),
        skipped: image_skipped,
    };
    let homebrew = Decision { moves: false, reason: "a snapshot is never published".to_owned() };
    release_notes::write(
        &out,
        &release_notes::render(&version, changes, &notes_image, &artifacts, &homebrew),
    )?;

    let formula = if flags.all_targets {
        let formula = homebrew::render(&version, &artifacts, release_notes::GITHUB_REPO)?;
        homebrew::write(sh, &out.join("homebrew"), &formula)?;
        Some(out.join("homebrew").join(homebrew::FORMULA))
    } else {
        skipped.push("Homebrew formula: it needs every platform's tarball, pass --all-targets".to_owned());
        None
    };

    println!("\nsnapshot {version}: nothing was tagged or published");
    if let Some(image) = &image {
        println!("  image     {image} (local engine)");
    }
    for (name, _) in &artifacts {
        let kind = if name == checksums::INSTALLER { "installer" } else { "tarball" };
        println!("  {kind:<9} {}", relative(sh, &out.join(name)));
    }
    println!("  checksums {}", relative(sh, &out.join(checksums::CHECKSUMS)));
    println!("  manifest  {}", relative(sh, &out.join(checksums::MANIFEST)));
    println!("  notes     {}", relative(sh, &out.join(release_notes::NOTES)));
    if let Some(formula) = &formula {
        println!("  formula   {}", relative(sh, formula));
    }
    for reason in &skipped {
        println!("  skipped   {reason}");
    }
    Ok(())
}

/// Builds the image for this machine, or says why it cannot: `Err(reason)` is a skip,
/// an `anyhow` error (a broken Dockerfile, say) fails the snapshot.
fn local_image(sh: &Shell, base: &project::BaseImage) -> anyhow::Result<Result<String, String>> {
    let base_image = &base.reference;
    let engine = match Engine::connect(sh) {
        Ok(engine) => engine,
        Err(err) => {
            let first_line = err.to_string().lines().next().unwrap_or_default().to_owned();
            return Ok(Err(format!("no container engine answers ({first_line})")));
        }
    };
    if engine.inspect(sh, base_image)?.is_none() {
        let program = engine.program();
        if let Err(err) = cmd!(sh, "{program} pull --quiet {base_image}").quiet().ignore_stdout().run() {
            // The tests' Debian base (test-support's base_image.rs names it), which
            // `cargo xtask test` builds: on a machine that cannot reach Docker Hub it is
            // the image a newcomer has.
            let tests_base = format!("stigmer-test-base:bookworm-{}", Platform::host().arch());
            let hint = match engine.inspect(sh, &tests_base)? {
                Some(_) => format!(" (this engine has the tests' {tests_base}: --base-image {tests_base})"),
                None => String::new(),
            };
            return Ok(Err(format!(
                "the base image {base_image} is not in the engine and pulling it failed ({err}); \
                 pass --base-image with an image the engine has{hint}"
            )));
        }
    }
    let build = LocalBuild {
        platform: Platform::host(),
        base_image: base,
        name: "stigmer-agent-runner",
        context: project::root().join("agent-runner"),
        dependency_path: DependencyPath::BuildPlatform,
    };
    image::build_local(sh, &build)?;
    Ok(Ok("stigmer-agent-runner:local".to_owned()))
}

fn relative(sh: &Shell, path: &Path) -> String {
    path.strip_prefix(sh.current_dir()).unwrap_or(path).display().to_string()
}
