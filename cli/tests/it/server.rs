//! `stigmer server start|stop|status|logs` end to end.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use test_support::{engine::Engine, registry::TestRegistry, shell};
use xshell::cmd;

use crate::{on_every_engine, run, run_ok, text, Instance};

on_every_engine!(
    start_status_logs_stop_leave_nothing_behind,
    logs_follow_streams_until_interrupted,
    logs_never_show_a_container_of_that_name_that_is_not_ours,
    starting_twice_keeps_the_healthy_container,
    without_a_local_build_it_pulls_the_published_image_and_never_tags_it_local,
    a_failed_pull_names_the_reference_and_how_to_build_locally,
    a_container_that_crashes_at_start_shows_its_last_logs_and_exits_4,
    stop_removes_orphans_and_works_without_the_id_file,
    a_start_killed_half_way_is_recovered_by_the_next_start,
    api_keys_reach_the_service_as_files_and_never_appear_in_inspect,
    api_key_files_are_private_and_go_with_the_container,
    the_workspace_is_handed_to_the_container_user_at_every_depth,
    a_local_image_of_another_version_is_reported,
);

fn start_status_logs_stop_leave_nothing_behind(engine: Engine) {
    let instance = Instance::new(engine);
    let started = run_ok(instance.stigmer(&["server", "start"]));
    assert!(started.contains("agent-runner is healthy after"), "{started}");
    let id = std::fs::read_to_string(instance.id_file()).unwrap().trim().to_owned();

    let status: Value =
        serde_json::from_str(&run_ok(instance.stigmer(&["server", "status", "--json"]))).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["ready"], true);
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["endpoint"], format!("http://127.0.0.1:{}", instance.port));
    // Restarts are on only once it has been healthy. Podman 4 cannot turn them on in a
    // container that exists: the CLI says so, and the container keeps "no".
    let sh = &instance.sh;
    let (name, format) = (&instance.name, "{{.HostConfig.RestartPolicy.Name}}");
    let policy = cmd!(sh, "docker inspect --format {format} {name}").read().unwrap();
    let cannot = "cannot change a container's restart policy (Podman before 5 cannot)";
    if engine == Engine::Podman {
        assert!(started.contains(cannot), "{started}");
        assert_ne!(policy, "unless-stopped");
    } else {
        assert!(!started.contains(cannot), "{started}");
        assert_eq!(policy, "unless-stopped");
    }

    // The service logs JSON lines on stdout; the startup line is among the first.
    let logs = run(instance.stigmer(&["server", "logs", "--tail", "all"]));
    let stdout = String::from_utf8_lossy(&logs.stdout);
    assert!(stdout.contains("\"msg\": \"starting agent-runner\""), "{}", text(&logs));
    let tail = run_ok(instance.stigmer(&["server", "logs", "--tail", "1"]));
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let recent = run_ok(instance.stigmer(&["server", "logs", "--since", "1h"]));
    assert!(recent.contains("\"msg\": \"starting agent-runner\""), "{recent}");
    let after_2038 = run(instance.stigmer(&["server", "logs", "--since", "2100-01-01T00:00:00Z"]));
    assert_eq!(after_2038.status.code(), Some(1), "{}", text(&after_2038));
    assert!(text(&after_2038).contains("is after 2038-01-19T03:14:07Z"), "{}", text(&after_2038));

    run_ok(instance.stigmer(&["server", "stop"]));
    assert_eq!(instance.containers(), vec![]);
    assert!(!instance.id_file().exists());
    let missing = run(instance.stigmer(&["server", "status"]));
    assert_eq!(missing.status.code(), Some(4));
    assert!(text(&missing).contains("agent-runner: missing"));
    // Stop is idempotent.
    assert!(run_ok(instance.stigmer(&["server", "stop"])).contains("agent-runner is not running"));
}

fn logs_follow_streams_until_interrupted(engine: Engine) {
    let instance = Instance::new(engine);
    run_ok(instance.stigmer(&["server", "start"]));
    let mut follow = Command::from(instance.stigmer(&["server", "logs", "--follow", "--tail", "0"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // New lines appear while following: the access log of these requests. Asked again
    // until one shows, as an engine under load may attach the stream late.
    let mut stdout = BufReader::new(follow.stdout.take().unwrap());
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while stdout.read_line(&mut line).is_ok_and(|read| read > 0) {
            let _ = lines.send(std::mem::take(&mut line));
        }
    });
    let url = format!("http://127.0.0.1:{}/version", instance.port);
    let sh = &instance.sh;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while !seen.contains("GET /version") {
        assert!(Instant::now() < deadline, "no access log line while following: {seen}");
        cmd!(sh, "curl -sS {url}").quiet().ignore_stdout().run().unwrap();
        while let Ok(line) = received.recv_timeout(Duration::from_millis(500)) {
            seen.push_str(&line);
        }
    }
    let pid = follow.id().to_string();
    cmd!(sh, "kill -INT {pid}").run().unwrap();
    let status = follow.wait().unwrap();
    assert!(status.success(), "Ctrl-C is a clean end: {status}");
}

/// Regression: `logs` looked the container up by name only, so it showed the output of
/// whatever container had that name, another installation's included.
fn logs_never_show_a_container_of_that_name_that_is_not_ours(engine: Engine) {
    let base = test_support::base_image::require("amd64");
    engine.provide(&base);
    let instance = Instance::without_image(engine);
    let sh = &instance.sh;
    let name = &instance.name;
    let someone_elses: [(&str, &[&str]); 2] = [
        ("unlabelled", &[]),
        // Made by a stigmer, but for another home: another installation's.
        (
            "another-home",
            &["--label", "dev.stigmer.managed-by=stigmer-cli", "--label", "dev.stigmer.home=/elsewhere"],
        ),
    ];
    for (whose, labels) in someone_elses {
        let line = format!("output of a container that is not ours ({whose})");
        cmd!(sh, "docker rm --force {name}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .ignore_status()
            .run()
            .unwrap();
        cmd!(sh, "docker run --name {name} {labels...} {base} echo {line}")
            .quiet()
            .ignore_stdout()
            .run()
            .unwrap();
        // Without an id file, and with one naming that container: neither makes it ours.
        for id_file in [false, true] {
            if id_file {
                let format = "{{.Id}}";
                let id = cmd!(sh, "docker inspect --format {format} {name}").read().unwrap();
                std::fs::create_dir_all(instance.id_file().parent().unwrap()).unwrap();
                std::fs::write(instance.id_file(), format!("{id}\n")).unwrap();
            }
            let output = run(instance.stigmer(&["server", "logs", "--tail", "all"]));
            let output_text = text(&output);
            assert_eq!(output.status.code(), Some(1), "{whose}, id file {id_file}: {output_text}");
            assert!(
                !output_text.contains(&line),
                "{whose}, id file {id_file}: showed its logs: {output_text}"
            );
            assert!(
                output_text
                    .contains(&format!("a container named {name} exists that this stigmer did not create")),
                "{whose}, id file {id_file}: {output_text}"
            );
        }
        let _ = std::fs::remove_file(instance.id_file());
    }
}

fn starting_twice_keeps_the_healthy_container(engine: Engine) {
    let instance = Instance::new(engine);
    run_ok(instance.stigmer(&["server", "start"]));
    let first = std::fs::read_to_string(instance.id_file()).unwrap();
    let again = run_ok(instance.stigmer(&["server", "start"]));
    assert!(again.contains("already running and healthy"), "{again}");
    assert_eq!(std::fs::read_to_string(instance.id_file()).unwrap(), first);
    assert_eq!(instance.containers().len(), 1);
}

fn without_a_local_build_it_pulls_the_published_image_and_never_tags_it_local(engine: Engine) {
    let registry = TestRegistry::start();
    let image = test_support::base_image::agent_runner_image(env!("CARGO_PKG_VERSION"));
    let published = format!("{}:v{}", registry.repository("agent-runner"), env!("CARGO_PKG_VERSION"));
    // Pushed from the engine that built it; pulled by the one under test.
    let builder = shell();
    cmd!(builder, "docker tag {image} {published}").run().unwrap();
    cmd!(builder, "docker push --quiet {published}").quiet().ignore_stdout().run().unwrap();
    cmd!(builder, "docker image rm --no-prune {published}").quiet().ignore_stdout().run().unwrap();

    let instance = Instance::without_image(engine);
    let _pulled = test_support::engine::ImageGuard::new([published.clone()]).also_on(engine);
    let sh = &instance.sh;
    let output = run_ok(instance.stigmer(&["server", "start"]).env("STIGMER_REGISTRY", registry.host()));
    assert!(output.contains(&format!("pulled {published}")), "{output}");
    // Found by reading: the pull was tagged `:local`, which every later start ran first,
    // so an upgraded CLI kept running the old image.
    let local = format!("{}:local", instance.name);
    let inspected = cmd!(sh, "docker image inspect {local}").quiet().ignore_stdout().ignore_stderr().run();
    assert!(inspected.is_err(), "the pull was tagged {local}");
    let status = instance.stigmer(&["server", "status", "--json"]).env("STIGMER_REGISTRY", registry.host());
    let status: Value = serde_json::from_str(&run_ok(status)).unwrap();
    assert_eq!(status["image"], published.as_str());
    assert_eq!(status["image_current"], true, "{status}");
    assert_eq!(status["ready"], true);
}

fn a_failed_pull_names_the_reference_and_how_to_build_locally(engine: Engine) {
    let instance = Instance::without_image(engine);
    // A registry address where nothing listens.
    let output = run(instance.stigmer(&["server", "start"]).env("STIGMER_REGISTRY", "127.0.0.1:9"));
    assert_eq!(output.status.code(), Some(1));
    let output = text(&output);
    assert!(output.contains("❌ Docker image not found locally and pull from registry failed."), "{output}");
    assert!(
        output.contains(&format!(
            "Registry pull attempted: 127.0.0.1:9/agent-runner:v{}",
            env!("CARGO_PKG_VERSION")
        )),
        "{output}"
    );
    assert!(output.contains("cargo xtask image --local"), "{output}");
    assert_eq!(instance.containers(), vec![]);
    // One version everywhere: what --version says the CLI runs is what it pulled.
    let version = run_ok(instance.stigmer(&["--version"]));
    let shown = version.lines().find_map(|line| line.strip_prefix("agent-runner:")).unwrap().trim();
    assert_eq!(shown, format!("ghcr.io/stigmer/agent-runner:v{}", env!("CARGO_PKG_VERSION")), "{version}");
}

#[test]
fn an_unreachable_engine_says_so_exits_3_and_writes_nothing() {
    let instance = Instance::without_image(Engine::Docker20);
    let home = instance.home.path().join("never-created");
    let output = run(instance
        .stigmer(&["server", "start"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .env("STIGMER_HOME", &home));
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let output = text(&output);
    assert!(output.contains("❌ Docker is not running. Agent-runner requires Docker."), "{output}");
    assert!(output.contains("unix:///nonexistent.sock (DOCKER_HOST): no such socket"), "{output}");
    assert!(output.contains("brew install --cask docker"), "{output}");
    assert!(!home.exists(), "state was written without an engine");
}

fn a_container_that_crashes_at_start_shows_its_last_logs_and_exits_4(engine: Engine) {
    let builder = shell();
    let base = test_support::base_image::require("amd64");
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {base}\nCMD [\"python3\", \"-c\", \"import sys; print('boom: the model is missing', file=sys.stderr); sys.exit(3)\"]\n"),
    )
    .unwrap();
    let crash = test_support::unique_name("stigmer-crash");
    let _image = test_support::engine::ImageGuard::new([crash.clone()]).also_on(engine);
    let context = context.path();
    cmd!(builder, "docker build --quiet --tag {crash} {context}").quiet().ignore_stdout().run().unwrap();
    engine.provide(&crash);

    let mut instance = Instance::without_image(engine);
    instance.image = Some(crash);
    let output = run(instance.stigmer(&["server", "start"]));
    assert_eq!(output.status.code(), Some(4), "{}", text(&output));
    let output = text(&output);
    assert!(output.contains("the agent-runner failed to start: the container exited (code 3)"), "{output}");
    assert!(output.contains("| boom: the model is missing"), "{output}");
    // It is left stopped for `logs`, and the next start clears it away.
    assert_eq!(instance.containers(), vec![(instance.name.clone(), "exited".to_owned())]);
    let logs = run(instance.stigmer(&["server", "logs"]));
    assert!(String::from_utf8_lossy(&logs.stderr).contains("boom"), "stderr stays stderr: {}", text(&logs));
}

fn stop_removes_orphans_and_works_without_the_id_file(engine: Engine) {
    let instance = Instance::new(engine);
    run_ok(instance.stigmer(&["server", "start"]));
    // An orphan: a container of this home under another name, as a crashed CLI of an
    // older version might leave.
    let sh = &instance.sh;
    let (name, orphan) = (&instance.name, format!("{}-orphan", instance.name));
    cmd!(sh, "docker rename {name} {orphan}").run().unwrap();
    std::fs::remove_file(instance.id_file()).unwrap();
    let other_port = super::free_port().to_string();
    run_ok(instance.stigmer(&["server", "start"]).env("STIGMER_AGENT_RUNNER_PORT", &other_port));
    assert_eq!(instance.containers().len(), 2);

    std::fs::remove_file(instance.id_file()).unwrap();
    let stopped = run_ok(instance.stigmer(&["server", "stop"]));
    assert!(stopped.contains(&format!("removed orphaned agent-runner container {orphan}")), "{stopped}");
    assert_eq!(instance.containers(), vec![]);
}

fn a_start_killed_half_way_is_recovered_by_the_next_start(engine: Engine) {
    let instance = Instance::new(engine);
    let mut start =
        Command::from(instance.stigmer(&["server", "start"])).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while instance.containers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    start.kill().unwrap();
    start.wait().unwrap();
    assert_eq!(instance.containers().len(), 1, "the killed start created no container");

    let recovered = run_ok(instance.stigmer(&["server", "start"]));
    assert!(recovered.contains("healthy"), "{recovered}");
    assert_eq!(instance.containers().len(), 1);
    assert_eq!(instance.containers()[0].1, "running");
}

fn api_keys_reach_the_service_as_files_and_never_appear_in_inspect(engine: Engine) {
    let instance = Instance::new(engine);
    let canary = "sk-canary-4f1d9a";
    let started = run_ok(
        instance
            .stigmer(&["server", "start"])
            .env("STIGMER_LLM_PROVIDER", "openai")
            .env("OPENAI_API_KEY", canary),
    );
    // Healthy means the service read the key: its configuration check requires it.
    assert!(started.contains("healthy"), "{started}");
    let sh = &instance.sh;
    let name = &instance.name;
    let inspect = cmd!(sh, "docker inspect {name}").read().unwrap();
    assert!(!inspect.contains(canary), "the key is visible in docker inspect");
    assert!(inspect.contains("OPENAI_API_KEY_FILE=/run/secrets/stigmer/OPENAI_API_KEY"), "{inspect}");
    assert!(inspect.contains("STIGMER_LLM_PROVIDER=openai"));
    let logs = run(instance.stigmer(&["server", "logs"]));
    assert!(!text(&logs).contains(canary), "the key was logged");
}

/// Regression: the key files stayed in `data/secrets/` after `stop`.
fn api_key_files_are_private_and_go_with_the_container(engine: Engine) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    let instance = Instance::new(engine);
    let secrets = instance.home.path().join("data/secrets");
    run_ok(
        instance
            .stigmer(&["server", "start"])
            .env("STIGMER_LLM_PROVIDER", "openai")
            .env("OPENAI_API_KEY", "sk-openai-canary")
            .env("ANTHROPIC_API_KEY", "sk-anthropic-canary"),
    );
    assert_eq!(mode(&secrets), 0o700, "{}", secrets.display());
    for (name, key) in [("OPENAI_API_KEY", "sk-openai-canary"), ("ANTHROPIC_API_KEY", "sk-anthropic-canary")]
    {
        let file = secrets.join(name);
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), key);
    }
    assert!(!secrets.join("GEMINI_API_KEY").exists(), "an unset key got a file");

    run_ok(instance.stigmer(&["server", "stop"]));
    assert!(!secrets.exists(), "the key files outlived the container");

    // What an older stigmer left behind goes at the next stop too, container or not.
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("OPENAI_API_KEY"), "sk-left-behind").unwrap();
    assert!(run_ok(instance.stigmer(&["server", "stop"])).contains("agent-runner is not running"));
    assert!(!secrets.exists(), "stop left an older run's key files");
}

/// Regression: the ownership fix went one level deep, so directories an older run left
/// deeper in the workspace stayed root's and the agent-runner could not write there.
fn the_workspace_is_handed_to_the_container_user_at_every_depth(engine: Engine) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let instance = Instance::new(engine);
    let workspace = instance.home.path().join("workspace");
    let nested = workspace.join("older-run/a/b");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(nested.join("notes.txt"), "from an older run").unwrap();
    for dir in [workspace.join("older-run"), workspace.join("older-run/a"), nested.clone()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A link in the workspace to a file outside it: its target is not the workspace's.
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::symlink(outside.path(), workspace.join("older-run/a/outside")).unwrap();
    let me = std::fs::metadata("/proc/self").unwrap().uid();

    run_ok(instance.stigmer(&["server", "start"]));
    // Root hands the workspace to the image's UID 1000; anyone else runs the container
    // as themselves, so it stays theirs.
    let owner = if me == 0 { 1000 } else { me };
    for path in [
        &workspace,
        &workspace.join("older-run"),
        &workspace.join("older-run/a"),
        &nested,
        &nested.join("notes.txt"),
    ] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (owner, owner), "{}", path.display());
    }
    assert_eq!(
        std::fs::metadata(outside.path()).unwrap().uid(),
        me,
        "the link was followed out of the workspace"
    );
    // The container can write at the bottom of that tree.
    let sh = &instance.sh;
    let name = &instance.name;
    cmd!(sh, "docker exec {name} sh -c 'echo written > /workspace/older-run/a/b/new.txt'").run().unwrap();
    assert_eq!(std::fs::read_to_string(nested.join("new.txt")).unwrap(), "written\n");
}

fn a_local_image_of_another_version_is_reported(engine: Engine) {
    let instance = Instance::without_image(engine);
    let old = test_support::base_image::agent_runner_image("0.0.1");
    engine.provide(&old);
    let local = format!("{}:local", instance.name);
    let sh = &instance.sh;
    cmd!(sh, "docker tag {old} {local}").run().unwrap();
    let output = run_ok(instance.stigmer(&["server", "start"]));
    assert!(
        output.contains(&format!(
            "note: {local} is agent-runner 0.0.1, this CLI is {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{output}"
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let sh = shell();
    let stigmer = crate::STIGMER;
    insta::assert_snapshot!(run_ok(cmd!(sh, "{stigmer} server --help")));
    insta::assert_snapshot!(run_ok(cmd!(sh, "{stigmer} server start --help")));
}
