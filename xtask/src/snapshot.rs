//! `cargo xtask release --snapshot`: every artifact of a release, built locally into
//! dist/, with nothing tagged or published: the agent-runner image into the local
//! engine, CLI tarballs, checksums, release notes and the Homebrew formula. What it
//! cannot make here (no engine, a base image it cannot pull, cross targets without
//! `--all-targets`) it skips, saying why, and makes the rest.

use std::path::Path;

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::{
    changelog, checksums,
    dist::{self, Stamp, Target},
    engine::Engine,
    flags, homebrew, project, release_notes,
};

pub(crate) fn run(sh: &Shell, flags: &flags::Release) -> anyhow::Result<()> {
    let version = snapshot_version(sh)?;
    eprintln!(
        "==> snapshot {version}: builds every artifact into {}, publishes nothing",
        flags.out.display()
    );
    let mut skipped: Vec<String> = Vec::new();

    let image = match image(sh, &flags.base_image)? {
        Ok(image) => Some(image),
        Err(reason) => {
            eprintln!("==> skipping the agent-runner image: {reason}");
            skipped.push(format!("agent-runner image: {reason}"));
            None
        }
    };

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
    let notes_image = release_notes::Image { registry: "ghcr.io/stigmer", digest: None };
    release_notes::write(&out, &release_notes::render(&version, changes, &notes_image, &artifacts))?;

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
        println!("  tarball   {}", relative(sh, &out.join(name)));
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

/// `X.Y.Z-snapshot+<short sha>`, `.dirty` added when the work tree has changes: a
/// snapshot never claims to be a commit it is not.
fn snapshot_version(sh: &Shell) -> anyhow::Result<semver::Version> {
    let mut version = project::workspace_version(sh)?;
    let sha = cmd!(sh, "git rev-parse --short=7 HEAD").quiet().ignore_stderr().read().unwrap_or_default();
    let sha = if sha.trim().is_empty() { "nogit".to_owned() } else { sha.trim().to_owned() };
    let dirty = cmd!(sh, "git status --porcelain --untracked-files=no")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_default();
    let build = if dirty.trim().is_empty() { sha } else { format!("{sha}.dirty") };
    version.pre = semver::Prerelease::new("snapshot")?;
    version.build = semver::BuildMetadata::new(&build)?;
    Ok(version)
}

/// Builds the image for this machine, or says why it cannot: `Err(reason)` is a skip,
/// an `anyhow` error (a broken Dockerfile, say) fails the snapshot.
fn image(sh: &Shell, base_image: &str) -> anyhow::Result<Result<String, String>> {
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
            return Ok(Err(format!(
                "the base image {base_image} is not in the engine and pulling it failed ({err}); \
                 pass --base-image with an image the engine has"
            )));
        }
    }
    let build = flags::Image {
        local: true,
        push: false,
        by_digest: false,
        merge: Vec::new(),
        platform: Vec::new(),
        allow_emulation: false,
        base_image: base_image.to_owned(),
        name: "stigmer-agent-runner".to_owned(),
        context: None,
        registry: String::new(),
        version: None,
        no_latest: false,
        builder: flags::BuilderChoice::Auto,
        username: None,
        password_stdin: false,
        cache_from: Vec::new(),
        cache_to: Vec::new(),
        sbom_generator: None,
        dry_run: false,
    };
    build.run(sh)?;
    Ok(Ok("stigmer-agent-runner:local".to_owned()))
}

fn relative(sh: &Shell, path: &Path) -> String {
    path.strip_prefix(sh.current_dir()).unwrap_or(path).display().to_string()
}
