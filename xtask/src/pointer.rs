//! The forward-only rule, written once: a floating pointer names the highest published
//! final release of its line. The pointers are the image's `latest`, `vX.Y` and `vX`,
//! and, on `latest`'s line, the Homebrew formula and GitHub's Latest release.
//!
//! `decide` says whether a pointer moves to the version being published; `expected`
//! says what a pointer must name once everything is published, which is what
//! `verify-release` checks. The plan, every mover (image tags, the formula, GitHub's
//! Latest) and `verify-release` call these two; no other module compares versions to
//! decide a move. Pure: the callers read the world (what is published, what the pointer
//! names now) at the moment they decide, so a plan that went stale cannot move a
//! pointer backwards.

use semver::Version;
use serde::{Deserialize, Serialize};

/// A tag that follows the newest release of its line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pointer {
    /// `latest`: the newest final release of all (also the formula and GitHub's Latest).
    Latest,
    /// `vX.Y`: the newest final release of X.Y.
    Minor(u64, u64),
    /// `vX`: the newest final release of X.
    Major(u64),
}

/// Whether a pointer moves to a version, and why, as the plan records it and every
/// mover prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Decision {
    pub(crate) moves: bool,
    pub(crate) reason: String,
}

/// What a pointer names now, read by its mover just before it decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Current {
    /// The pointer does not exist yet.
    Absent,
    /// It names this version.
    Version(Version),
    /// It names something that is no release of ours: a third party's index, a build
    /// with no version, a formula that names none. Not ours to keep.
    NotOurs,
}

impl Pointer {
    /// The pointers of a version's lines. A pre-release's lines are its final
    /// release's: none of them may name it, so `verify-release` reads them too.
    pub(crate) fn lines_of(version: &Version) -> [Pointer; 3] {
        [Pointer::Latest, Pointer::Minor(version.major, version.minor), Pointer::Major(version.major)]
    }

    /// The pointers a version may move: a final release's lines, and none for a
    /// pre-release, so `latest` never names a release candidate (metadata-action's
    /// `latest=auto` trap).
    pub(crate) fn of(version: &Version) -> Vec<Pointer> {
        if !version.pre.is_empty() {
            return Vec::new();
        }
        Pointer::lines_of(version).to_vec()
    }

    pub(crate) fn tag(self) -> String {
        match self {
            Pointer::Latest => "latest".to_owned(),
            Pointer::Minor(major, minor) => format!("v{major}.{minor}"),
            Pointer::Major(major) => format!("v{major}"),
        }
    }

    /// Whether `version` is on this pointer's line: final releases only.
    pub(crate) fn covers(self, version: &Version) -> bool {
        version.pre.is_empty()
            && match self {
                Pointer::Latest => true,
                Pointer::Minor(major, minor) => version.major == major && version.minor == minor,
                Pointer::Major(major) => version.major == major,
            }
    }

    /// What this pointer must name: the highest of `published` on its line (pre-releases
    /// and other lines are not on it). `None` while nothing on the line is published.
    pub(crate) fn expected<'a>(
        self,
        published: impl IntoIterator<Item = &'a Version>,
    ) -> Option<&'a Version> {
        published.into_iter().filter(|v| self.covers(v)).max()
    }

    /// Whether this pointer moves to `version`, being published now, given every version
    /// published (`published`) and what the pointer names now (`current`). It moves when
    /// `version` is the highest of its line, counting what the pointer names (a pointer
    /// ahead of what the caller knows is believed); it stays when a higher one exists, and
    /// for a version not on its line (a pre-release). A pointer naming a pre-release or
    /// an index that is no release of ours is not on its line, so it moves to the release.
    pub(crate) fn decide(self, version: &Version, published: &[Version], current: &Current) -> Decision {
        let tag = format!("v{version}");
        if !self.covers(version) {
            let reason = if version.pre.is_empty() {
                format!("{tag} is not on {}'s line", self.tag())
            } else {
                format!("a pre-release never moves {}", self.tag())
            };
            return Decision { moves: false, reason };
        }
        let named = match current {
            Current::Version(at) => Some(at),
            Current::Absent | Current::NotOurs => None,
        };
        let highest = self.expected(published.iter().chain(named).chain([version]));
        if let Some(newer) = highest.filter(|highest| *highest > version) {
            return Decision { moves: false, reason: format!("v{newer} is newer on its line") };
        }
        let reason = match current {
            Current::Absent => format!("new, to {tag}"),
            Current::Version(at) if at == version => format!("names {tag} already"),
            Current::Version(at) => format!("from v{at} to {tag}"),
            Current::NotOurs => format!("from what is no release of ours to {tag}"),
        };
        Decision { moves: true, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn pointers_move_only_forward_on_their_own_line() {
        let published = [v("1.2.3"), v("1.3.0"), v("2.0.0-rc.1")];
        let backport = v("1.2.4");
        let moves: Vec<(String, bool)> = Pointer::of(&backport)
            .into_iter()
            .map(|p| (p.tag(), p.decide(&backport, &published, &Current::Absent).moves))
            .collect();
        assert_eq!(
            moves,
            [("latest".to_owned(), false), ("v1.2".to_owned(), true), ("v1".to_owned(), false)]
        );
        assert!(Pointer::of(&v("2.0.0-rc.1")).is_empty());
        let rerun = Pointer::Latest.decide(&v("1.3.0"), &published, &Current::Version(v("1.3.0")));
        assert_eq!(rerun, Decision { moves: true, reason: "names v1.3.0 already".to_owned() });
    }

    #[test]
    fn a_pointer_naming_a_pre_release_moves_to_the_release() {
        // Found by reading: with `latest` on 2.0.0-rc.1, the plan said it moves and the
        // mover said it stays (it compared the pre-release as newer).
        let current = Current::Version(v("2.0.0-rc.1"));
        let decision = Pointer::Latest.decide(&v("1.4.0"), &[v("1.3.0")], &current);
        assert_eq!(decision, Decision { moves: true, reason: "from v2.0.0-rc.1 to v1.4.0".to_owned() });
        assert_eq!(Pointer::Latest.expected(&[v("1.4.0"), v("2.0.0-rc.1")]), Some(&v("1.4.0")));
    }

    #[test]
    fn a_pointer_ahead_of_what_is_known_is_believed() {
        let decision = Pointer::Major(1).decide(&v("1.4.0"), &[v("1.3.0")], &Current::Version(v("1.9.0")));
        assert_eq!(decision, Decision { moves: false, reason: "v1.9.0 is newer on its line".to_owned() });
    }

    #[test]
    fn a_pre_release_moves_nothing_and_is_expected_nowhere() {
        let decision = Pointer::Latest.decide(&v("1.4.0-rc.1"), &[], &Current::Absent);
        assert!(!decision.moves, "{decision:?}");
        assert_eq!(Pointer::Minor(1, 4).expected(&[v("1.4.0-rc.1")]), None);
    }
}
