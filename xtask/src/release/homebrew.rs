//! `cargo xtask homebrew`: renders Formula/stigmer.rb from checksums.txt into a tap
//! checkout, checks it with `ruby -c`, and commits and pushes it when it changed. It
//! only moves forward: not when the plan says a newer release exists, nor when the
//! tap's formula names a newer version.
//! Owns the formula text; the assets it points at are uploaded by `github_release.rs`,
//! and the completions and man pages it installs are in each archive (`cli_docs.rs`).

use std::path::Path;

use anyhow::{bail, Context};
use xshell::{cmd, Shell};

use crate::{
    dist::{checksums, cli_docs},
    files, flags, plan,
    platform::Target,
    pointer::{Current, Pointer},
};

pub(crate) const FORMULA: &str = "Formula/stigmer.rb";

impl flags::Homebrew {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let plan =
            plan::load(sh, self.plan.as_deref(), self.version.as_deref(), &self.registry, self.dry_run)?;
        let version = &plan.version;
        let publishing = self.commit || self.push;
        let dry_run = self.dry_run || plan.dry_run;
        if publishing && !dry_run && !version.pre.is_empty() {
            bail!("v{version} is a pre-release: Homebrew gets stable releases only (render it without --commit/--push to look at it)");
        }
        let artifacts = checksums::read(&sh.current_dir().join(&self.checksums))?;
        let formula = render(version, &artifacts, &self.repo)?;
        let tap = sh.current_dir().join(&self.tap);
        let current = std::fs::read_to_string(tap.join(FORMULA)).ok();
        // The plan's decision, made again over the tap's formula as it is now.
        let in_tap = match current.as_deref().map(formula_version) {
            None => Current::Absent,
            Some(Some(at)) => Current::Version(at),
            Some(None) => Current::NotOurs,
        };
        let now = Pointer::Latest.decide(version, &plan.released, &in_tap);
        let stays = match (plan.homebrew.moves, now.moves) {
            (false, _) => Some(plan.homebrew.reason.clone()),
            (true, false) => Some(format!("{}, in the tap's formula or the published releases", now.reason)),
            (true, true) => None,
        };
        if dry_run {
            check(sh, &formula)?;
            let before = current.unwrap_or_default();
            let diff = similar::TextDiff::from_lines(&before, &formula);
            print!("{}", diff.unified_diff().context_radius(3).header(FORMULA, FORMULA));
            match &stays {
                Some(reason) => println!("the formula would stay ({reason})"),
                None => println!("the formula would move to {version}"),
            }
            println!("dry run: nothing written");
            return Ok(());
        }
        if let (Some(reason), true) = (&stays, publishing) {
            println!("the formula stays ({reason}): nothing written");
            return Ok(());
        }
        write(sh, &tap, &formula)?;
        println!("wrote {}", tap.join(FORMULA).display());
        if publishing {
            commit(sh, &tap, version, self.push)?;
        }
        Ok(())
    }
}

/// The `version "X.Y.Z"` a formula installs.
pub(crate) fn formula_version(formula: &str) -> Option<semver::Version> {
    formula.lines().find_map(|line| {
        let quoted = line.trim().strip_prefix("version \"")?.strip_suffix('"')?;
        semver::Version::parse(quoted).ok()
    })
}

/// The formula for `version`, or an error naming each platform checksums.txt lacks.
pub(crate) fn render(
    version: &semver::Version,
    artifacts: &[(String, String)],
    repo: &str,
) -> anyhow::Result<String> {
    let asset = |target: Target| -> Option<(String, &str)> {
        let name = target.archive_name(version);
        let sha256 = artifacts.iter().find(|(file, _)| *file == name)?.1.as_str();
        Some((format!("https://github.com/{repo}/releases/download/v{version}/{name}"), sha256))
    };
    let missing: Vec<String> = Target::ALL
        .into_iter()
        .filter(|&target| target.is_unix() && asset(target).is_none())
        .map(|target| target.archive_name(version))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the formula needs every platform, and the checksums lack {}: build them with `cargo xtask dist` \
             (every target) and `cargo xtask checksums`",
            missing.join(", ")
        );
    }
    let block = |target: Target, cpu: &str| {
        let (url, sha256) = asset(target).expect("checked above");
        format!("    on_{cpu} do\n      url \"{url}\"\n      sha256 \"{sha256}\"\n    end\n")
    };
    Ok(format!(
        r##"# Written by `cargo xtask homebrew` for stigmer {version}; the next release rewrites it.
class Stigmer < Formula
  desc "Runs the Stigmer agent-runner container on this machine"
  homepage "https://github.com/{repo}"
  version "{version}"
  license "Apache-2.0"

  on_macos do
{darwin_arm}{darwin_intel}  end

  on_linux do
{linux_arm}{linux_intel}  end

  def install
    bin.install "stigmer"
    bash_completion.install "{bash}" => "stigmer"
    zsh_completion.install "{zsh}"
    fish_completion.install "{fish}"
    man1.install Dir["{man_dir}*.1"]
  end

  def caveats
    <<~EOS
      `stigmer server start` runs the agent-runner in a container, so it needs Docker
      (Docker Desktop, Colima, OrbStack or Docker Engine) or Podman running.
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{{bin}}/stigmer --version")
  end
end
"##,
        bash = cli_docs::BASH,
        zsh = cli_docs::ZSH,
        fish = cli_docs::FISH,
        man_dir = cli_docs::MAN_DIR,
        darwin_arm = block(Target::DarwinArm64, "arm"),
        darwin_intel = block(Target::DarwinAmd64, "intel"),
        linux_arm = block(Target::LinuxArm64, "arm"),
        linux_intel = block(Target::LinuxAmd64, "intel"),
    ))
}

/// `ruby -c` on the formula, in a scratch file.
fn check(sh: &Shell, formula: &str) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new().suffix(".rb").tempfile()?;
    std::fs::write(scratch.path(), formula)?;
    let path = scratch.path();
    cmd!(sh, "ruby -c {path}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("checking the formula with `ruby -c` (install Ruby if it is missing)")
}

/// Writes the formula into `tap` once `ruby -c` accepts it; a rejected formula leaves
/// the tap as it was.
pub(crate) fn write(sh: &Shell, tap: &Path, formula: &str) -> anyhow::Result<()> {
    check(sh, formula)?;
    let dest = tap.join(FORMULA);
    std::fs::create_dir_all(dest.parent().unwrap()).with_context(|| format!("creating {}", tap.display()))?;
    files::write_atomically(&dest, formula.as_bytes())
}

/// Commits the formula when it changed (`stigmer X.Y.Z`), and pushes when asked. Push
/// runs even when nothing was committed, so a rerun after a failed push finishes it.
fn commit(sh: &Shell, tap: &Path, version: &semver::Version, push: bool) -> anyhow::Result<()> {
    let _dir = sh.push_dir(tap);
    cmd!(sh, "git add -- {FORMULA}").quiet().run().context("staging the formula in the tap")?;
    let unchanged = cmd!(sh, "git diff --cached --quiet -- {FORMULA}").quiet().run().is_ok();
    if unchanged {
        println!("the formula is unchanged: no commit");
    } else {
        let message = format!("stigmer {version}");
        cmd!(sh, "git commit --quiet -m {message} -- {FORMULA}").run().context("committing the formula")?;
        println!("committed `{message}` in {}", tap.display());
    }
    if push {
        cmd!(sh, "git push --quiet origin HEAD").run().context("pushing the tap")?;
        println!("pushed the tap");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifacts(version: &str) -> Vec<(String, String)> {
        let version = semver::Version::parse(version).unwrap();
        Target::ALL
            .into_iter()
            .map(|target| target.archive_name(&version))
            // In name order, as checksums.txt lists them.
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name, format!("{i}").repeat(64)))
            .collect()
    }

    #[test]
    fn the_formula_names_every_platform_and_installs_completions_and_man_pages() {
        let formula = render(&semver::Version::new(1, 3, 0), &artifacts("1.3.0"), "stigmer/stigmer").unwrap();
        insta::assert_snapshot!(formula);
        check(&Shell::new().unwrap(), &formula).unwrap();
    }

    #[test]
    fn the_formula_names_its_version() {
        let formula = render(&semver::Version::new(1, 3, 0), &artifacts("1.3.0"), "stigmer/stigmer").unwrap();
        assert_eq!(formula_version(&formula), Some(semver::Version::new(1, 3, 0)));
    }

    #[test]
    fn a_missing_platform_is_refused_by_name() {
        let mut partial = artifacts("1.3.0");
        partial.retain(|(name, _)| !name.contains("linux-arm64"));
        let err = render(&semver::Version::new(1, 3, 0), &partial, "stigmer/stigmer").unwrap_err();
        assert!(err.to_string().contains("lack stigmer-v1.3.0-linux-arm64.tar.gz:"), "{err}");
    }
}
