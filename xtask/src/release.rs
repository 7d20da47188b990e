//! `cargo xtask release --bump`: cuts a release in git. Preflight first (every
//! refusal at once, nothing written), then the version in Cargo.toml, Cargo.lock and
//! the agent-runner's pyproject/uv.lock, the changelog roll-over, one commit
//! `release: vX.Y.Z`, an annotated tag, and with `--push` one atomic push.
//!
//! Edits are computed in memory first (`--dry-run` prints their diffs) and written
//! back together; a failure before the commit restores every file. A rerun after a
//! failure finishes the job: when HEAD is already `release: vX.Y.Z` it only tags and
//! pushes what is missing.
//!
//! The `release` subsystem is the git and GitHub side of a release, and the top of the
//! tool: this command and its `--snapshot` (`snapshot`), the changelog (`changelog`),
//! the notes (`release_notes`), the Homebrew formula (`homebrew`), the GitHub release
//! (`github_release`) and `cargo xtask verify-release` (`verify_release`), which checks
//! what all of them published. It sits above `image`, `dist` and `publish`: nothing
//! but `main` imports it.

pub(crate) mod changelog;
pub(crate) mod github_release;
pub(crate) mod homebrew;
pub(crate) mod rebuild;
pub(crate) mod release_notes;
pub(crate) mod snapshot;
pub(crate) mod verify_release;

use anyhow::{bail, Context};
use semver::{Prerelease, Version};
use xshell::{cmd, Shell};

use crate::{files, flags, project, version::Bump};

const REPOSITORY_URL: &str = "https://github.com/stigmer/stigmer";

/// The version after `current`. Bumps are literal semver, 0.x included (0.4.2 minor
/// gives 0.5.0, major gives 1.0.0). `rc` starts a candidate of the next minor or
/// increments one; any other bump from a candidate releases it when it is already at
/// least that big a step.
pub(crate) fn next_version(current: &Version, bump: &Bump) -> anyhow::Result<Version> {
    let base = Version::new(current.major, current.minor, current.patch);
    let candidate = !current.pre.is_empty();
    let next = match bump {
        Bump::Exact(version) => version.clone(),
        Bump::Rc if candidate => {
            let number =
                current.pre.as_str().strip_prefix("rc.").and_then(|n| n.parse::<u64>().ok()).with_context(
                    || {
                        format!(
                        "{current} is a pre-release but not an `rc.N` one: give the next version explicitly"
                    )
                    },
                )?;
            Version { pre: Prerelease::new(&format!("rc.{}", number + 1))?, ..base }
        }
        Bump::Rc => Version { pre: Prerelease::new("rc.1")?, ..Version::new(base.major, base.minor + 1, 0) },
        Bump::Patch if candidate => base,
        Bump::Minor if candidate && base.patch == 0 => base,
        Bump::Major if candidate && base.minor == 0 && base.patch == 0 => base,
        Bump::Patch => Version::new(base.major, base.minor, base.patch + 1),
        Bump::Minor => Version::new(base.major, base.minor + 1, 0),
        Bump::Major => Version::new(base.major + 1, 0, 0),
    };
    if next <= *current {
        bail!("{next} is not greater than the current version {current}");
    }
    Ok(next)
}

impl flags::Release {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let Some(bump) = self.bump.clone() else {
            return snapshot::run(sh, &self);
        };
        let current = project::workspace_version(sh)?;
        let tag = format!("v{current}");
        let head_subject =
            cmd!(sh, "git log -1 --format=%s").quiet().ignore_stderr().read().unwrap_or_default();
        if head_subject == format!("release: {tag}") {
            let state = Finishing::of(sh, &tag, &self)?;
            let previous = version_before_head(sh);
            let same_command =
                previous.as_ref().and_then(|p| next_version(p, &bump).ok()) == Some(current.clone());
            if same_command || !state.missing.is_empty() {
                if !same_command {
                    let from = previous.map_or("the commit before".to_owned(), |p| p.to_string());
                    bail!(
                        "HEAD is the release commit of {tag}, which is not finished ({}); `--bump {bump}` \
                         from {from} is not {current}. Finish {tag} first with `cargo xtask release --bump \
                         {current}{}`, then cut the next release",
                        state.missing.join(", "),
                        if self.push { " --push" } else { "" },
                    );
                }
                let problems = work_tree_problems(sh, &self.branch)?;
                if !problems.is_empty() {
                    bail!("cannot finish {tag}:\n  - {}", problems.join("\n  - "));
                }
                eprintln!("==> HEAD is the release commit of {tag}: finishing that release");
                if state.missing.is_empty() {
                    eprintln!("  nothing is missing");
                }
                for step in &state.missing {
                    eprintln!("  {step}");
                }
                if self.dry_run {
                    eprintln!("dry run: nothing written");
                    return Ok(());
                }
                return finish(sh, &tag, &self);
            }
        }

        let next = next_version(&current, &bump)?;
        let next_tag = format!("v{next}");
        let problems = preflight(sh, &next_tag, &self.branch)?;
        if !problems.is_empty() {
            bail!("cannot release {next_tag}:\n  - {}", problems.join("\n  - "));
        }
        let today = chrono::Utc::now().date_naive();
        let edits = planned_edits(sh, &current, &next, today)?;

        eprintln!("plan: release {next_tag} (from {current}) on {}", self.branch);
        for edit in &edits {
            eprintln!("  edit    {}", edit.path);
        }
        eprintln!("  commit  release: {next_tag}\n  tag     {next_tag} (annotated)");
        eprintln!(
            "  push    {}",
            if self.push { "the commit and the tag, atomically, to origin" } else { "no (pass --push)" }
        );
        if self.dry_run {
            for edit in &edits {
                let diff = similar::TextDiff::from_lines(&edit.before, &edit.after);
                print!("{}", diff.unified_diff().context_radius(2).header(&edit.path, &edit.path));
            }
            eprintln!("dry run: nothing written");
            return Ok(());
        }
        commit(sh, &edits, &next_tag)?;
        finish(sh, &next_tag, &self)
    }
}

/// Every reason not to release, each with what to do; empty when all is well.
fn preflight(sh: &Shell, tag: &str, branch: &str) -> anyhow::Result<Vec<String>> {
    let mut problems = work_tree_problems(sh, branch)?;
    if cmd!(sh, "git remote get-url origin").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
        let remote_tag = format!("refs/tags/{tag}");
        if !cmd!(sh, "git ls-remote --tags origin {remote_tag}").quiet().read().unwrap_or_default().is_empty()
        {
            problems.push(format!("tag {tag} exists on origin already: choose another version"));
        }
    }
    let local_tag = format!("refs/tags/{tag}");
    if cmd!(sh, "git rev-parse --quiet --verify {local_tag}").quiet().ignore_stdout().run().is_ok() {
        problems.push(format!(
            "tag {tag} exists already: choose another version, or `git tag -d {tag}` if it is a leftover"
        ));
    }
    match changelog::unreleased(&sh.read_file("CHANGELOG.md").unwrap_or_default()) {
        None => problems.push("CHANGELOG.md has no `## [Unreleased]` section: add one".to_owned()),
        Some(body) if !changelog::has_entries(body) => problems.push(
            "CHANGELOG.md's Unreleased section is empty: list what changed under `## [Unreleased]`"
                .to_owned(),
        ),
        Some(_) => {}
    }
    Ok(problems)
}

/// What any release run needs of the work tree: clean, on the release branch, and not
/// behind origin.
fn work_tree_problems(sh: &Shell, branch: &str) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    if cmd!(sh, "git rev-parse --is-inside-work-tree").quiet().ignore_stdout().ignore_stderr().run().is_err()
    {
        bail!("{} is not a git work tree", sh.current_dir().display());
    }
    let dirty = cmd!(sh, "git status --porcelain").quiet().read()?;
    if !dirty.is_empty() {
        problems.push(format!(
            "the work tree has uncommitted changes ({} paths): commit or stash them",
            dirty.lines().count()
        ));
    }
    let current_branch = cmd!(sh, "git symbolic-ref --quiet --short HEAD").quiet().ignore_status().read()?;
    if current_branch != branch {
        problems.push(format!(
            "on branch {:?}, not {branch}: `git switch {branch}`, or pass --branch to release from this one",
            current_branch
        ));
    }
    if cmd!(sh, "git remote get-url origin").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
        match cmd!(sh, "git fetch --quiet origin {branch}").quiet().run() {
            Ok(()) => {
                let behind = cmd!(sh, "git rev-list --count HEAD..FETCH_HEAD").quiet().read()?;
                if behind != "0" {
                    problems.push(format!(
                        "{branch} is {behind} commit(s) behind origin/{branch}: `git pull --ff-only`"
                    ));
                }
            }
            Err(_) => problems
                .push(format!("cannot fetch {branch} from origin: check the remote, or push {branch} first")),
        }
    }
    Ok(problems)
}

/// What is left to do of a release whose commit is HEAD: the tag, the push.
struct Finishing {
    missing: Vec<String>,
}

impl Finishing {
    fn of(sh: &Shell, tag: &str, flags: &flags::Release) -> anyhow::Result<Finishing> {
        let head = cmd!(sh, "git rev-parse HEAD").quiet().read()?;
        let tag_ref = format!("refs/tags/{tag}^{{commit}}");
        let tagged = cmd!(sh, "git rev-parse --quiet --verify {tag_ref}").quiet().ignore_status().read()?;
        let mut missing = Vec::new();
        if tagged.is_empty() {
            missing.push(format!("tag {tag} (annotated)"));
        }
        if flags.push {
            let branch_ref = format!("refs/heads/{}", flags.branch);
            let remote_tag = format!("refs/tags/{tag}^{{}}");
            let remote =
                cmd!(sh, "git ls-remote origin {branch_ref} {remote_tag}").quiet().ignore_status().read()?;
            let pushed =
                |name: &str| remote.lines().any(|line| line.starts_with(&head) && line.ends_with(name));
            if !pushed(&branch_ref) || !pushed(&remote_tag) {
                missing.push(format!("push {} and {tag} to origin", flags.branch));
            }
        }
        Ok(Finishing { missing })
    }
}

/// The workspace version of HEAD's parent: what the release commit bumped from.
fn version_before_head(sh: &Shell) -> Option<Version> {
    let manifest = cmd!(sh, "git show HEAD^:Cargo.toml").quiet().ignore_stderr().read().ok()?;
    let doc: toml_edit::DocumentMut = manifest.parse().ok()?;
    Version::parse(doc["workspace"]["package"]["version"].as_str()?).ok()
}

struct Edit {
    path: String,
    before: String,
    after: String,
}

fn planned_edits(
    sh: &Shell,
    current: &Version,
    next: &Version,
    date: chrono::NaiveDate,
) -> anyhow::Result<Vec<Edit>> {
    let mut edits = Vec::new();
    let mut edit = |path: &str, change: &dyn Fn(&str) -> anyhow::Result<String>| -> anyhow::Result<()> {
        if !sh.path_exists(path) {
            return Ok(());
        }
        let before = sh.read_file(path)?;
        let after = change(&before).with_context(|| format!("editing {path}"))?;
        edits.push(Edit { path: path.to_owned(), before, after });
        Ok(())
    };
    let next_text = next.to_string();
    edit("Cargo.toml", &|text| {
        let mut doc: toml_edit::DocumentMut = text.parse()?;
        set_keeping_comments(&mut doc["workspace"]["package"]["version"], &next_text);
        Ok(doc.to_string())
    })?;
    // The workspace's own packages: no `source`, the current version.
    edit("Cargo.lock", &|text| set_lock_versions(text, |p| p.get("source").is_none(), current, &next_text))?;
    edit("agent-runner/pyproject.toml", &|text| {
        let mut doc: toml_edit::DocumentMut = text.parse()?;
        set_keeping_comments(&mut doc["project"]["version"], &next_text);
        Ok(doc.to_string())
    })?;
    edit("agent-runner/uv.lock", &|text| {
        set_lock_versions(
            text,
            |p| p.get("name").and_then(|n| n.as_str()) == Some("stigmer-agent-runner"),
            current,
            &next_text,
        )
    })?;
    let previous = previous_release(sh, next);
    edit("CHANGELOG.md", &|text| changelog::roll_over(text, next, date, previous.as_ref(), REPOSITORY_URL))?;
    Ok(edits)
}

fn set_lock_versions(
    text: &str,
    ours: impl Fn(&toml_edit::Table) -> bool,
    current: &Version,
    next: &str,
) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse()?;
    let packages = doc["package"].as_array_of_tables_mut().context("no [[package]] entries")?;
    for package in packages.iter_mut() {
        if ours(package) && package.get("version").and_then(|v| v.as_str()) == Some(&current.to_string()) {
            set_keeping_comments(&mut package["version"], next);
        }
    }
    Ok(doc.to_string())
}

/// Replaces a string value but keeps its decor: the comment after it, its spacing.
fn set_keeping_comments(item: &mut toml_edit::Item, value: &str) {
    let decor = item.as_value().map(|old| old.decor().clone());
    *item = toml_edit::value(value);
    if let (Some(decor), Some(new)) = (decor, item.as_value_mut()) {
        *new.decor_mut() = decor;
    }
}

/// The release `next` follows: the highest final `vX.Y.Z` tag below it, which for a
/// backport (v1.2.4 after v1.3.0) is the one of its own line (v1.2.3), never a newer
/// one. What the changelog's compare link starts from.
fn previous_release(sh: &Shell, next: &Version) -> Option<Version> {
    let tags = cmd!(sh, "git tag --list v*").quiet().read().ok()?;
    tags.lines().filter_map(|t| Version::parse(&t[1..]).ok()).filter(|v| v.pre.is_empty() && v < next).max()
}

/// Writes every edit and commits them; on any failure puts every file back as it was.
fn commit(sh: &Shell, edits: &[Edit], tag: &str) -> anyhow::Result<()> {
    let paths = &edits.iter().map(|e| e.path.as_str()).collect::<Vec<&str>>();
    let result = (|| -> anyhow::Result<()> {
        for edit in edits {
            files::write_atomically(&sh.current_dir().join(&edit.path), edit.after.as_bytes())?;
        }
        // The edited tree must resolve against its lock file as the release workflow's
        // jobs will: a dependency that pins an old workspace version fails here, and the
        // files are put back. (`--no-deps` would resolve nothing and so check nothing.)
        // For this machine's platform only: the whole graph would need every platform's
        // crates downloaded (Windows, Android), which a maintainer offline has not.
        let host =
            cmd!(sh, "rustc --print host-tuple").quiet().read().context("asking rustc for its host")?;
        cmd!(sh, "cargo metadata --locked --format-version 1 --filter-platform {host}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("checking that the bumped workspace resolves with `cargo metadata --locked`")?;
        cmd!(sh, "git add -- {paths...}").quiet().run()?;
        let message = format!("release: {tag}");
        cmd!(sh, "git commit --quiet -m {message}").run().context("committing the release")?;
        Ok(())
    })();
    if let Err(err) = result {
        for edit in edits {
            files::write_atomically(&sh.current_dir().join(&edit.path), edit.before.as_bytes())?;
        }
        let _ = cmd!(sh, "git reset --quiet -- {paths...}").quiet().run();
        return Err(
            err.context("every file was put back as it was; fix the cause and run the same command again")
        );
    }
    Ok(())
}

/// Tags HEAD (unless the tag is there already at HEAD) and pushes when asked.
fn finish(sh: &Shell, tag: &str, flags: &flags::Release) -> anyhow::Result<()> {
    let head = cmd!(sh, "git rev-parse HEAD").quiet().read()?;
    let tag_ref = format!("refs/tags/{tag}^{{commit}}");
    match cmd!(sh, "git rev-parse --quiet --verify {tag_ref}").quiet().ignore_status().read()? {
        tagged if tagged.is_empty() => {
            let message = format!("stigmer {tag}");
            cmd!(sh, "git tag --annotate {tag} -m {message}").quiet().run().context("creating the tag")?;
            eprintln!("==> tagged {tag}");
        }
        tagged if tagged == head => eprintln!("==> {tag} already tags HEAD"),
        tagged => bail!("tag {tag} exists at {tagged}, not at the release commit {head}: delete it (`git tag -d {tag}`) if it is a leftover"),
    }
    if flags.push {
        let branch = &flags.branch;
        cmd!(sh, "git push --atomic --quiet origin {branch} {tag}").run().context("pushing the release")?;
        eprintln!("==> pushed {branch} and {tag} to origin: the release workflow starts from the tag");
    } else {
        eprintln!("next: `git push --atomic origin {} {tag}` (or rerun with --push)", flags.branch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(current: &str, bump: &str) -> String {
        next_version(&Version::parse(current).unwrap(), &bump.parse().unwrap())
            .map_or_else(|e| format!("error: {e}"), |v| v.to_string())
    }

    #[test]
    fn bump_rules() {
        let table = [
            ("0.1.0", "patch", "0.1.1"),
            ("0.1.0", "minor", "0.2.0"),
            ("0.4.2", "major", "1.0.0"),
            ("1.2.3", "rc", "1.3.0-rc.1"),
            ("1.3.0-rc.1", "rc", "1.3.0-rc.2"),
            ("1.3.0-rc.2", "minor", "1.3.0"),
            ("1.3.0-rc.2", "patch", "1.3.0"),
            ("1.3.0-rc.2", "major", "2.0.0"),
            ("2.0.0-rc.1", "major", "2.0.0"),
            ("1.2.3", "1.4.0", "1.4.0"),
            ("1.2.3", "v1.2.4", "1.2.4"),
            ("1.2.3", "1.2.3", "error: 1.2.3 is not greater than the current version 1.2.3"),
            ("1.2.3", "1.0.0", "error: 1.0.0 is not greater than the current version 1.2.3"),
        ];
        for (current, bump, expected) in table {
            assert_eq!(next(current, bump), expected, "{current} with {bump}");
        }
        assert!("sideways".parse::<Bump>().is_err());
    }
}
