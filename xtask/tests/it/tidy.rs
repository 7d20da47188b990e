//! Repository hygiene that a reviewer would otherwise have to remember.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

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

/// The base image is named in one place, agent-runner/Dockerfile's pin, by digest: a
/// tag anywhere else (a clap default, a workflow's env, a doc) would be a second pin
/// that moves on its own.
#[test]
fn only_the_dockerfile_pin_names_the_base_image() {
    let tag = concat!("python:", "3.11-slim");
    let root = project_root();
    let files = std::process::Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(&root)
        .output()
        .unwrap();
    let mut unpinned = Vec::new();
    for file in String::from_utf8(files.stdout).unwrap().lines() {
        // Rust sources talk about the tag (tests, examples); flags.rs is where a default
        // would hide.
        if file.ends_with(".rs") && file != "xtask/src/flags.rs" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(file)) else { continue };
        for (number, line) in text.lines().enumerate() {
            if line.match_indices(tag).any(|(at, _)| !line[at + tag.len()..].starts_with("@sha256:")) {
                unpinned.push(format!("{file}:{}: {line}", number + 1));
            }
        }
    }
    assert!(
        unpinned.is_empty(),
        "these name the base by its tag alone; the pin is agent-runner/Dockerfile's:\n{}",
        unpinned.join("\n")
    );
    let pin = std::process::Command::new(crate::XTASK).arg("base-image").output().unwrap();
    let pin = String::from_utf8(pin.stdout).unwrap();
    assert!(pin.starts_with(&format!("{tag}@sha256:")), "{pin}");
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

/// A crate's modules, by module path (`["registry", "oci"]` for `src/registry/oci.rs`,
/// `["registry"]` for `src/registry.rs` or `src/registry/mod.rs`, `[]` for main.rs or
/// lib.rs), each with its source text.
fn crate_modules(src: &Path) -> Vec<(Vec<String>, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files
        .iter()
        .map(|file| {
            let relative = file.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_str().unwrap().to_owned()).collect();
            if path.last().is_some_and(|name| name == "mod") || path == ["main"] || path == ["lib"] {
                path.pop();
            }
            (path, std::fs::read_to_string(file).unwrap())
        })
        .collect()
}

/// The paths a use tree or a path spells from the start of `text`, each as its segments
/// after `prefix` (`{registry::{oci::{self, Registry}, digest::hex}, flags}` is four:
/// `registry::oci`, `registry::oci::Registry`, `registry::digest::hex`, `flags`); returns
/// what follows it.
fn use_tree<'a>(mut text: &'a str, prefix: &[String], found: &mut Vec<Vec<String>>) -> &'a str {
    let mut path = prefix.to_vec();
    loop {
        text = text.trim_start();
        if let Some(group) = text.strip_prefix('{') {
            text = group;
            loop {
                text = text.trim_start();
                if let Some(rest) = text.strip_prefix('}') {
                    return rest;
                }
                text = use_tree(text, &path, found).trim_start();
                match text.strip_prefix(',') {
                    Some(rest) => text = rest,
                    None => return text.trim_start().strip_prefix('}').unwrap_or(text),
                }
            }
        }
        let ident: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        text = &text[ident.len()..];
        if !ident.is_empty() && ident != "self" {
            path.push(ident);
        }
        match text.strip_prefix("::") {
            Some(rest) => text = rest,
            None => break,
        }
    }
    found.push(path);
    match text.trim_start().strip_prefix("as ") {
        Some(rest) => rest.trim_start().trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'),
        None => text,
    }
}

/// The module paths each module's non-test code names: `crate::` paths anywhere (every
/// path of a `use crate::{...}` group), `super::` and `self::` paths resolved from the
/// module, and a module's own submodules named bare (`tags::write_version` in
/// publish.rs). Each is cut to the longest known module it starts with, so
/// `crate::registry::oci::Registry` names `registry::oci`; what names no module (an item
/// of main.rs) is dropped.
fn module_imports(modules: &[(Vec<String>, String)]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let known: BTreeSet<&[String]> = modules.iter().map(|(path, _)| path.as_slice()).collect();
    let not_in_path = |code: &str, at: usize| {
        let before = &code[..at];
        !before.ends_with("::") && !before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
    };
    let mut imports = BTreeMap::new();
    for (module, text) in modules {
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut found = Vec::new();
        for (at, _) in code.match_indices("crate::").filter(|(at, _)| not_in_path(code, *at)) {
            use_tree(&code[at + "crate::".len()..], &[], &mut found);
        }
        for (at, _) in code.match_indices("super::").filter(|(at, _)| not_in_path(code, *at)) {
            let mut rest = &code[at..];
            let mut base = module.clone();
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            use_tree(rest, &base, &mut found);
        }
        for (at, _) in code.match_indices("self::").filter(|(at, _)| not_in_path(code, *at)) {
            use_tree(&code[at + "self::".len()..], module, &mut found);
        }
        for (child, _) in modules.iter().filter(|(path, _)| path.len() == module.len() + 1) {
            let name = child.last().unwrap();
            let bare = format!("{name}::");
            if child.starts_with(module) && code.match_indices(&bare).any(|(at, _)| not_in_path(code, at)) {
                found.push(child.clone());
            }
        }
        let named = found
            .into_iter()
            .filter_map(|mut path| {
                while !known.contains(path.as_slice()) {
                    path.pop()?;
                }
                Some(path).filter(|path| !path.is_empty() && path != module)
            })
            .collect();
        imports.insert(module.clone(), named);
    }
    imports
}

/// The import graph between the units of the directory `dir` (a module path; `[]` is
/// the crate's `src`): each module directly in it is a unit together with everything
/// below it (`crate::registry::oci::x` names `registry`), and `dir`'s own module is one
/// more, `self` (the crate root, main.rs or lib.rs, which only declares and dispatches,
/// is left out). Each edge keeps one module that makes it, to name in a failure.
fn unit_graph(
    imports: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    dir: &[String],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let unit = |module: &[String]| -> Option<String> {
        match module.strip_prefix(dir)? {
            [] if dir.is_empty() => None,
            [] => Some("self".to_owned()),
            [first, ..] => Some(first.clone()),
        }
    };
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (module, named) in imports {
        let Some(from) = unit(module) else { continue };
        let edges = graph.entry(from.clone()).or_default();
        for to in named.iter().filter_map(|path| unit(path)).filter(|to| *to != from) {
            edges.entry(to).or_insert_with(|| module.join("::"));
        }
    }
    for to in graph.values().flat_map(|edges| edges.keys().cloned()).collect::<Vec<_>>() {
        graph.entry(to).or_default();
    }
    graph
}

/// A cycle in `imports`, as the modules along it, if there is one.
fn import_cycle(imports: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        imports: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
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
    let mut done = BTreeSet::new();
    imports.keys().find_map(|module| visit(module, imports, &mut Vec::new(), &mut done))
}

/// The import cycles of a crate, one per directory that has one, each as `dir: a → b
/// (by a::x) → a (by b)`: first between the top-level modules and directories of `src`,
/// then between the modules of each directory, shallowest first.
fn import_cycles(modules: &[(Vec<String>, String)]) -> Vec<String> {
    let imports = module_imports(modules);
    let mut dirs: Vec<&[String]> = vec![&[]];
    dirs.extend(
        imports
            .keys()
            .filter(|dir| {
                !dir.is_empty() && imports.keys().any(|m| m.len() > dir.len() && m.starts_with(dir))
            })
            .map(Vec::as_slice),
    );
    dirs.sort_by_key(|dir| dir.len());
    let mut cycles = Vec::new();
    for dir in dirs {
        let graph = unit_graph(&imports, dir);
        let plain =
            graph.iter().map(|(from, edges)| (from.clone(), edges.keys().cloned().collect())).collect();
        if let Some(cycle) = import_cycle(&plain) {
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|pair| format!("{} (by {})", pair[1], graph[&pair[0]][&pair[1]]))
                .collect();
            let name = if dir.is_empty() { "the top level".to_owned() } else { dir.join("::") };
            cycles.push(format!("{name}: {} → {}", cycle[0], steps.join(" → ")));
        }
    }
    cycles
}

/// Imports point one way: no module imports, directly or through others, a module that
/// imports it. Read by subsystem first: the top-level modules and directories of `src`
/// as units, then the modules inside each directory.
#[test]
fn no_module_imports_a_module_that_imports_it() {
    let root = project_root();
    for src in ["xtask/src", "xtask/test-support/src", "cli/src"] {
        let cycles = import_cycles(&crate_modules(&root.join(src)));
        assert!(cycles.is_empty(), "import cycles in {src}:\n{}", cycles.join("\n"));
    }
    // The check can fail: two modules naming each other are found.
    let mut cyclic = BTreeMap::new();
    cyclic.insert("a".to_owned(), ["b".to_owned()].into());
    cyclic.insert("b".to_owned(), ["a".to_owned()].into());
    assert_eq!(import_cycle(&cyclic), Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]));
}

/// Nested modules are read as units: two subsystems whose different modules name each
/// other are a cycle, and so are two modules of one directory naming each other, by
/// `super::` or through the directory's own module.
#[test]
fn an_import_cycle_between_or_inside_subsystems_is_found() {
    let crate_of = |files: &[(&str, &str)]| -> Vec<(Vec<String>, String)> {
        files
            .iter()
            .map(|(path, text)| {
                let path = path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
                (path, text.to_string())
            })
            .collect()
    };
    let acyclic = crate_of(&[
        ("", "mod plan; mod registry; mod release;"),
        ("plan", "use crate::registry::{oci::{self, Registry}, digest::hex as h};"),
        ("registry", "pub(crate) mod digest; pub(crate) mod oci;"),
        ("registry/oci", "use super::digest;"),
        ("registry/digest", ""),
        ("release", "mod notes; fn f() { notes::render() }"),
        ("release/notes", "use crate::{plan, registry::oci};"),
    ]);
    assert_eq!(import_cycles(&acyclic), Vec::<String>::new());

    let mut between = acyclic.clone();
    between[3].1.push_str("\nfn g() { crate::release::notes::render() }");
    assert_eq!(
        import_cycles(&between),
        ["the top level: plan → registry (by plan) → release (by registry::oci) → plan (by release::notes)"]
    );

    let mut inside = acyclic.clone();
    inside[4].1.push_str("use crate::registry::oci::Registry;");
    assert_eq!(
        import_cycles(&inside),
        ["registry: digest → oci (by registry::digest) → digest (by registry::oci)"]
    );

    let mut through_self = acyclic;
    through_self[6].1.push_str("use crate::release::VERSION;");
    assert_eq!(
        import_cycles(&through_self),
        ["release: notes → self (by release::notes) → notes (by release)"]
    );
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

/// Each dependency's features as `cargo tree` resolves them for `args`: "name@version"
/// to its feature list.
fn resolved_features(args: &[&str]) -> std::collections::BTreeMap<String, String> {
    let sh = xshell::Shell::new().unwrap();
    sh.change_dir(project_root());
    let format = "{p}|{f}";
    let text =
        xshell::cmd!(sh, "cargo tree --locked {args...} --format {format} --prefix none").read().unwrap();
    text.lines()
        .filter_map(|line| {
            let (package, features) = line.split_once('|')?;
            let mut words = package.split_whitespace();
            let (name, version) = (words.next()?, words.next()?);
            // Workspace members carry their path; their own features are not shared builds.
            (!package.contains(" (/"))
                .then(|| (format!("{name}@{version}"), features.trim_end_matches(" (*)").trim().to_owned()))
        })
        .collect()
}

/// `cargo xtask` (the alias: xtask alone, with test-env) and the test build (the whole
/// workspace, dev-dependencies too) turn on the same features of every dependency they
/// share, so cargo compiles each of those once in a cold run, not once per feature set
/// (tokio, hyper and everything built on them were compiled two and three times).
#[test]
fn one_feature_set_builds_the_dependencies() {
    let alias =
        resolved_features(&["--package", "xtask", "--features", "xtask/test-env", "-e", "normal,build"]);
    let tests = resolved_features(&["--workspace", "--features", "xtask/test-env", "-e", "normal,build,dev"]);
    assert!(alias.len() > 100, "read too few packages: {alias:?}");
    let differ: Vec<String> = alias
        .iter()
        .filter_map(|(package, features)| {
            let other = tests.get(package)?;
            (other != features).then(|| format!("{package}: `cargo xtask` [{features}], the tests [{other}]"))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "turn these features on in xtask/Cargo.toml too (see the comment above `hyper` there):\n{}",
        differ.join("\n")
    );
}
