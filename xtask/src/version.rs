//! Versions as a release spells and orders them: `vX.Y.Z` parsed with build metadata
//! refused (a Docker tag cannot hold `+`, and GitHub and Homebrew would drop it), and
//! the snapshot version. Pure functions; nothing here reads the world. (When a floating
//! pointer moves is `pointer.rs`'s.)

use std::str::FromStr;

use anyhow::{bail, Context};
use semver::Version;

/// `vX.Y.Z`, `X.Y.Z` or `vX.Y.Z-rc.N` as a version a release can publish.
pub(crate) fn parse(text: &str) -> anyhow::Result<Version> {
    let version = Version::parse(text.trim_start_matches('v'))
        .with_context(|| format!("{text:?} is not a version like v1.2.3 or v1.3.0-rc.1"))?;
    if !version.build.is_empty() {
        bail!(
            "{text:?} has build metadata (`+{}`), which no image tag can hold: publish v{} instead, \
             or a pre-release such as v{}-rc.1",
            version.build,
            Version { build: semver::BuildMetadata::EMPTY, ..version.clone() },
            Version::new(version.major, version.minor, version.patch),
        );
    }
    Ok(version)
}

/// The git tag, image tag and GitHub release name of a version.
pub(crate) fn tag(version: &Version) -> String {
    format!("v{version}")
}

/// The version of a snapshot of `workspace` at commit `sha`: the next patch with a
/// `snapshot-<sha>` pre-release (GoReleaser's `incpatch` + `-SNAPSHOT-<sha>`). It sorts
/// above the release the workspace carries and below the next one, and is a valid
/// Docker tag. The sha is one identifier joined by `-`, so a sha of digits alone never
/// becomes a numeric identifier with a leading zero (invalid semver).
pub(crate) fn snapshot(workspace: &Version, sha: &str, dirty: bool) -> Version {
    let base = Version::new(workspace.major, workspace.minor, workspace.patch);
    // A workspace on a pre-release (1.3.0-rc.1) snapshots towards that release.
    let next = if workspace.pre.is_empty() { Version { patch: base.patch + 1, ..base } } else { base };
    let mut pre = format!("snapshot-{sha}");
    if dirty {
        pre.push_str(".dirty");
    }
    Version { pre: semver::Prerelease::new(&pre).expect("letters, digits, `-` and `.` only"), ..next }
}

pub(crate) fn is_snapshot(version: &Version) -> bool {
    version.pre.as_str().starts_with("snapshot-")
}

/// What `release --bump` asks for: a semver step, the next release candidate, or an
/// exact version.
#[derive(Clone, Debug, PartialEq)]
pub enum Bump {
    Major,
    Minor,
    Patch,
    Rc,
    Exact(Version),
}

impl FromStr for Bump {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Bump> {
        Ok(match text {
            "major" => Bump::Major,
            "minor" => Bump::Minor,
            "patch" => Bump::Patch,
            "rc" => Bump::Rc,
            _ if text.trim_start_matches('v').starts_with(|c: char| c.is_ascii_digit()) => {
                Bump::Exact(parse(text)?)
            }
            _ => bail!("{text:?} is neither major, minor, patch, rc nor a version like 1.4.0"),
        })
    }
}

impl std::fmt::Display for Bump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bump::Major => f.write_str("major"),
            Bump::Minor => f.write_str("minor"),
            Bump::Patch => f.write_str("patch"),
            Bump::Rc => f.write_str("rc"),
            Bump::Exact(version) => write!(f, "{version}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn build_metadata_is_refused_with_what_to_publish_instead() {
        let err = parse("v1.2.3+build.7").unwrap_err().to_string();
        assert_eq!(
            err,
            "\"v1.2.3+build.7\" has build metadata (`+build.7`), which no image tag can hold: publish \
             v1.2.3 instead, or a pre-release such as v1.2.3-rc.1"
        );
        assert_eq!(parse("1.3.0-rc.1").unwrap(), v("1.3.0-rc.1"));
        assert!(parse("1.2").is_err());
    }

    #[test]
    fn a_snapshot_sorts_between_the_workspace_release_and_the_next() {
        let snapshot = snapshot(&v("0.1.0"), "0412345", false);
        assert_eq!(snapshot.to_string(), "0.1.1-snapshot-0412345");
        assert!(snapshot > v("0.1.0") && snapshot < v("0.1.1"));
        assert!(is_snapshot(&snapshot));
        assert_eq!(
            super::snapshot(&v("1.3.0-rc.1"), "abc1234", true).to_string(),
            "1.3.0-snapshot-abc1234.dirty"
        );
        // A valid Docker tag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
        let tag = tag(&snapshot);
        assert!(tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)), "{tag}");
    }
}
