//! Repository hygiene that a reviewer would otherwise have to remember.

use std::path::{Path, PathBuf};

use test_support::project_root;

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name == "target") {
                continue;
            }
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_module_says_what_it_owns() {
    let root = project_root();
    let mut files = Vec::new();
    for dir in ["xtask/src", "xtask/test-support/src", "cli/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let undocumented: Vec<_> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "modules without a `//!` doc line saying what they own: {undocumented:?}"
    );
}

#[test]
fn the_changelog_has_an_unreleased_section() {
    let changelog = std::fs::read_to_string(project_root().join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains("\n## [Unreleased]\n"), "CHANGELOG.md lacks `## [Unreleased]`");
}
