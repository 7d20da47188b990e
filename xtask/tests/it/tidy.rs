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
fn workspace_version() -> String {
    let manifest = std::fs::read_to_string(project_root().join("Cargo.toml")).unwrap();
    let doc: toml_edit::DocumentMut = manifest.parse().unwrap();
    doc["workspace"]["package"]["version"].as_str().unwrap().to_owned()
}

#[test]
fn the_agent_runner_carries_the_workspace_version() {
    let pyproject = std::fs::read_to_string(project_root().join("agent-runner/pyproject.toml")).unwrap();
    let doc: toml_edit::DocumentMut = pyproject.parse().unwrap();
    assert_eq!(doc["project"]["version"].as_str(), Some(workspace_version().as_str()));
}

#[test]
fn the_dockerfile_and_xtask_agree_on_the_default_base_image() {
    let dockerfile = std::fs::read_to_string(project_root().join("agent-runner/Dockerfile")).unwrap();
    let help = std::process::Command::new(crate::XTASK).args(["image", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let dockerfile_default = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ARG BASE_IMAGE="))
        .expect("the Dockerfile declares `ARG BASE_IMAGE=<default>`");
    assert!(
        help.contains(&format!("[default: {dockerfile_default}]")),
        "`cargo xtask image --base-image` does not default to the Dockerfile's {dockerfile_default}:\n{help}"
    );
}

/// A workspace dependency by path carries no version: the release bump changes the
/// workspace version, and a pinned `version = "X.Y.Z"` would stop the tree resolving.
#[test]
fn no_workspace_path_dependency_pins_a_version() {
    let mut pinned = Vec::new();
    for manifest in ["xtask/Cargo.toml", "xtask/test-support/Cargo.toml", "cli/Cargo.toml"] {
        let doc: toml_edit::DocumentMut =
            std::fs::read_to_string(project_root().join(manifest)).unwrap().parse().unwrap();
        for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
            let Some(deps) = doc.get(table).and_then(|t| t.as_table_like()) else { continue };
            for (name, dep) in deps.iter() {
                let dep = dep.as_table_like();
                if dep.is_some_and(|d| d.contains_key("path") && d.contains_key("version")) {
                    pinned.push(format!("{manifest} [{table}] {name}"));
                }
            }
        }
    }
    assert!(pinned.is_empty(), "path dependencies that pin a version: {pinned:?}");
}

/// The modules a crate's non-test code names (`crate::x` anywhere, and each top-level
/// name of a `use crate::{...}` group), module by module.
fn module_imports(src: &Path) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut modules = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) =
            path.file_stem().and_then(|s| s.to_str()).filter(|_| path.extension().is_some_and(|e| e == "rs"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut named = std::collections::BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let (mut depth, mut item) = (0, String::new());
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            named.insert(item.split("::").next().unwrap().trim().to_owned());
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                named.insert(item.split("::").next().unwrap().trim().to_owned());
            } else {
                let ident: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                named.insert(ident);
            }
        }
        named.remove(name);
        modules.insert(name.to_owned(), named);
    }
    let known: std::collections::BTreeSet<String> = modules.keys().cloned().collect();
    for named in modules.values_mut() {
        named.retain(|module| known.contains(module));
    }
    modules
}

/// A cycle in `imports`, as the modules along it, if there is one.
fn import_cycle(
    imports: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        imports: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if !done.insert(module.to_owned()) {
            return None;
        }
        path.push(module.to_owned());
        for next in &imports[module] {
            if let Some(cycle) = visit(next, imports, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    imports.keys().find_map(|module| visit(module, imports, &mut Vec::new(), &mut done))
}

/// Imports point one way: a module never imports, directly or through others, a module
/// that imports it (main.rs and lib.rs, which only declare and dispatch, aside).
#[test]
fn no_module_imports_a_module_that_imports_it() {
    let root = project_root();
    for src in ["xtask/src", "xtask/test-support/src", "cli/src"] {
        let mut imports = module_imports(&root.join(src));
        imports.remove("main");
        imports.remove("lib");
        for named in imports.values_mut() {
            named.remove("main");
            named.remove("lib");
        }
        assert_eq!(import_cycle(&imports), None, "an import cycle in {src}");
    }
    // The check can fail: two modules naming each other are found.
    let mut cyclic = std::collections::BTreeMap::new();
    cyclic.insert("a".to_owned(), ["b".to_owned()].into());
    cyclic.insert("b".to_owned(), ["a".to_owned()].into());
    assert_eq!(import_cycle(&cyclic), Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]));
}

/// README.md's prerequisite list and `cargo xtask test`'s check name the same tools:
/// every tool, package and rustup target the list names from `docker-registry` on
/// (the two engine bullets are checked by `docker info` and `buildx::missing`) is in
/// test.rs, where the check says how to get it (the rustup targets are `dist`'s, in
/// platform.rs).
#[test]
fn readme_prerequisites_are_checked() {
    let readme = std::fs::read_to_string(project_root().join("README.md")).unwrap();
    let section = readme.split("### Prerequisites").nth(1).unwrap();
    let section = section.split("`cargo xtask test` checks these first").next().unwrap();
    let list = &section[section.find("- `docker-registry`").expect("the docker-registry bullet")..];
    let check = ["xtask/src/test.rs", "xtask/src/platform.rs"]
        .map(|file| std::fs::read_to_string(project_root().join(file)).unwrap())
        .concat();
    let named: Vec<&str> = list.split('`').skip(1).step_by(2).collect();
    assert!(named.len() > 15, "found only {named:?} in README.md's prerequisites");
    let unchecked: Vec<&&str> = named.iter().filter(|name| !check.contains(**name)).collect();
    assert!(
        unchecked.is_empty(),
        "README.md lists prerequisites that `cargo xtask test` does not check: {unchecked:?}"
    );
}

/// One module writes tags: `publish/tags.rs` is the only caller of `Registry::put_tag`
/// (defined in `registry/oci.rs`), and nothing lets buildx push (`--push`, `push=true`),
/// so every tag write in a registry goes through the write-once and forward-only rules
/// there. (Tags in the local engine, `docker build --tag`, publish nothing.)
#[test]
fn only_tags_rs_writes_a_tag() {
    const TAGS: &str = "xtask/src/publish/tags.rs";
    const OCI: &str = "xtask/src/registry/oci.rs";
    let root = project_root();
    let mut files = Vec::new();
    rust_files(&root.join("xtask/src"), &mut files);
    assert!(files.contains(&root.join(TAGS)), "{TAGS} moved: name its new path here");
    let writers: Vec<String> = files
        .iter()
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .filter(|path| path != TAGS && path != OCI)
        .filter(|path| {
            let text = std::fs::read_to_string(root.join(path)).unwrap();
            text.contains(".put_tag(") || text.contains("\"--push\"") || text.contains("push=true")
        })
        .collect();
    assert!(writers.is_empty(), "modules that write tags besides {TAGS}: {writers:?}");
    let oci = std::fs::read_to_string(root.join(OCI)).unwrap();
    assert_eq!(oci.matches("put_tag(").count(), 1, "{OCI} defines put_tag and never calls it");
}
