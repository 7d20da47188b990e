//! CHANGELOG.md in the Keep a Changelog format: reading the Unreleased section and
//! rolling it over into a dated version section with compare links. Pure text in,
//! text out; the release command decides when to write.

use anyhow::bail;

const UNRELEASED: &str = "## [Unreleased]";

/// The body of `## [Unreleased]` (up to the next `## ` heading), or `None` when the
/// changelog has no such section.
pub(crate) fn unreleased(changelog: &str) -> Option<&str> {
    section(changelog, "Unreleased")
}

/// The body of `## [name]` or `## [name] - date`, up to the next `## ` heading.
pub(crate) fn section<'a>(changelog: &'a str, name: &str) -> Option<&'a str> {
    let heading = format!("## [{name}]");
    let mut offset = 0;
    let start = changelog.split_inclusive('\n').find_map(|line| {
        let found = (line.trim_end() == heading || line.starts_with(&format!("{heading} - ")))
            .then_some(offset + line.len());
        offset += line.len();
        found
    })?;
    let rest = &changelog[start..];
    let end = rest.find("\n## ").map_or_else(|| link_start(rest), |i| i + 1);
    Some(&rest[..end])
}

/// Whether a section says anything: headings like `### Added` alone do not count.
pub(crate) fn has_entries(section: &str) -> bool {
    section.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with('#') && !line.starts_with('[')
    })
}

/// Moves the Unreleased entries into `## [version] - date`, leaves an empty
/// Unreleased section above it, and updates the link definitions at the bottom.
pub(crate) fn roll_over(
    changelog: &str,
    version: &semver::Version,
    date: chrono::NaiveDate,
    previous: Option<&semver::Version>,
    repository_url: &str,
) -> anyhow::Result<String> {
    let Some(body) = unreleased(changelog) else {
        bail!("CHANGELOG.md has no `{UNRELEASED}` section: add one above the latest release");
    };
    if !has_entries(body) {
        bail!("CHANGELOG.md's Unreleased section is empty: list what changed under `{UNRELEASED}` first");
    }
    let body_start = changelog.find(body).expect("the body is a slice of the changelog");
    let head = &changelog[..body_start];
    let tail = &changelog[body_start + body.len()..];
    let mut out = format!("{head}\n## [{version}] - {date}\n\n{}\n", body.trim_matches('\n'));
    let tail = tail.trim_start_matches('\n');
    let (sections, links) = tail.split_at(link_start(tail));
    if !sections.is_empty() {
        out.push('\n');
        out.push_str(sections.trim_end_matches('\n'));
        out.push('\n');
    }

    let mut definitions: Vec<String> = links
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("[Unreleased]:"))
        .map(str::to_owned)
        .collect();
    let this_link = match previous {
        Some(previous) => format!("[{version}]: {repository_url}/compare/v{previous}...v{version}"),
        None => format!("[{version}]: {repository_url}/releases/tag/v{version}"),
    };
    definitions.insert(0, this_link);
    definitions.insert(0, format!("[Unreleased]: {repository_url}/compare/v{version}...HEAD"));
    out.push('\n');
    out.push_str(&definitions.join("\n"));
    out.push('\n');
    Ok(out)
}

/// Where the trailing block of `[name]: url` link definitions begins.
fn link_start(text: &str) -> usize {
    let mut start = text.len();
    for line in text.lines().rev() {
        let trimmed = line.trim();
        if trimmed.is_empty() || (trimmed.starts_with('[') && trimmed.contains("]: ")) {
            start = text[..start].rfind(line).unwrap_or(start);
        } else {
            break;
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "https://github.com/stigmer/stigmer";

    fn date() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    fn version(text: &str) -> semver::Version {
        semver::Version::parse(text).unwrap()
    }

    const FIRST: &str = "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n### Added\n\n- The CLI.\n\n[Unreleased]: https://github.com/stigmer/stigmer/commits/main\n";

    #[test]
    fn the_first_release_links_to_its_tag() {
        let rolled = roll_over(FIRST, &version("0.1.0"), date(), None, REPO).unwrap();
        insta::assert_snapshot!(rolled);
    }

    #[test]
    fn a_later_release_links_a_comparison_with_the_previous_one() {
        let first = roll_over(FIRST, &version("0.1.0"), date(), None, REPO).unwrap();
        let second = first.replace("## [Unreleased]\n", "## [Unreleased]\n\n### Fixed\n\n- A crash.\n");
        let rolled = roll_over(&second, &version("0.2.0"), date(), Some(&version("0.1.0")), REPO).unwrap();
        insta::assert_snapshot!(rolled);
    }

    #[test]
    fn an_empty_unreleased_section_is_refused() {
        let empty = "# Changelog\n\n## [Unreleased]\n\n### Added\n\n## [0.1.0] - 2026-01-01\n\n- x\n";
        assert_eq!(unreleased(empty), Some("\n### Added\n\n"));
        let err = roll_over(empty, &version("0.2.0"), date(), None, REPO).unwrap_err();
        assert!(err.to_string().contains("Unreleased section is empty"), "{err}");
    }

    #[test]
    fn a_released_section_is_found_by_version() {
        let first = roll_over(FIRST, &version("0.1.0"), date(), None, REPO).unwrap();
        assert_eq!(section(&first, "0.1.0"), Some("\n### Added\n\n- The CLI.\n\n"));
        assert_eq!(section(&first, "0.1"), None);
    }

    #[test]
    fn a_changelog_without_unreleased_is_refused() {
        let err = roll_over("# Changelog\n", &version("0.2.0"), date(), None, REPO).unwrap_err();
        assert!(err.to_string().contains("no `## [Unreleased]` section"), "{err}");
    }
}
