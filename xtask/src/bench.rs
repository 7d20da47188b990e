//! `cargo xtask bench`: the numbers that show we beat the old pipeline. Every figure is
//! measured several times (median, min, max) and printed beside its target and the
//! seed's old figure; results go to `target/bench/results.json` and `results.md`.
//! Benchmarks live here and never in timed tests; `--quick` runs each once, which is
//! what the test suite does to prove the bench works.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::{
    build::{
        engine::Engine,
        prepare::{BuildRequest, DependencyPath, LOCAL_BUILD_LABEL},
    },
    dist::{self, checksums},
    flags,
    human::human_bytes,
    plan,
    platform::{Platform, Target},
    project,
    publish::{
        self,
        publish_plan::{self, Steps},
        verify,
    },
    registry::oci::{self, Registry, RetryPolicy},
};

#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Bytes,
    Count,
    Ratio,
}

struct Measurement {
    name: String,
    unit: Unit,
    samples: Vec<f64>,
    /// Lower is better; the figure must be at most this.
    target: Option<f64>,
    seed: Option<&'static str>,
}

impl Measurement {
    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    fn median(&self) -> f64 {
        let sorted = self.sorted();
        let mid = sorted.len() / 2;
        if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        }
    }

    fn show(&self, value: f64) -> String {
        match self.unit {
            Unit::Seconds if value < 1.0 => format!("{:.0} ms", value * 1000.0),
            Unit::Seconds => format!("{value:.2} s"),
            Unit::Bytes => human_bytes(value as u64),
            Unit::Count => format!("{value:.0}"),
            Unit::Ratio => format!("{value:.2}×"),
        }
    }

    fn verdict(&self) -> &'static str {
        match self.target {
            Some(target) if self.median() <= target => "met",
            Some(_) => "MISSED",
            None => "",
        }
    }
}

impl flags::Bench {
    pub(crate) fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let runs = if self.quick { 1 } else { self.runs.max(1) };
        let engine = Engine::connect(sh)?;
        let base = match &self.base_image {
            Some(base) => base.clone(),
            None => test_support::base_image::tag("amd64"),
        };
        let base_facts = engine
            .inspect(sh, &base)?
            .with_context(|| format!("the base image {base} is not in the engine: run `cargo xtask test --only-base-images`, or pass --base-image"))?;
        let work = tempfile::tempdir()?;
        let context = work.path().join("agent-runner");
        let source = project::root().join("agent-runner/.");
        cmd!(sh, "cp -a {source} {context}").run()?;
        for leftover in [".venv", ".pytest_cache", "tests"] {
            let _ = std::fs::remove_dir_all(context.join(leftover));
        }
        let image = test_support::unique_name("stigmer-bench");
        let mut results = Vec::new();

        eprintln!("==> build context and cold build");
        results.push(Measurement {
            name: "build context (after .dockerignore)".into(),
            unit: Unit::Bytes,
            samples: vec![context_size(sh, &context)? as f64],
            target: Some(100_000.0),
            seed: None,
        });
        let build = |no_cache: bool| -> anyhow::Result<(Duration, String)> {
            let started = Instant::now();
            let tags = [format!("{image}:local")];
            let build_args = [("BASE_IMAGE", base.clone()), ("VERSION", "bench".to_owned())];
            let request = BuildRequest {
                context: &context,
                platform: Platform::host(),
                tags: &tags,
                // The CLI runs `:local` only when `image --local` made it, as here.
                labels: &[LOCAL_BUILD_LABEL.to_owned()],
                build_args: &build_args,
                pull: false,
                no_cache,
            };
            let id = engine.build_with(sh, &request, DependencyPath::BuildPlatform)?;
            Ok((started.elapsed(), id))
        };
        let (cold, _) = build(true)?;
        results.push(Measurement {
            name: "cold image build".into(),
            unit: Unit::Seconds,
            samples: vec![cold.as_secs_f64()],
            target: None,
            seed: Some("4-5 min (image, 2.04 GB)"),
        });

        eprintln!("==> warm rebuilds after a one-line app change ({runs}x)");
        let app = context.join("src/stigmer_agent_runner/__init__.py");
        let mut warm = Vec::new();
        let mut id = String::new();
        // Nothing may be fetched: pip refuses every index, so a missed dependency cache
        // fails the bench instead of timing a download.
        let _offline = sh.push_env("PIP_NO_INDEX", "1");
        for run in 0..runs {
            let mut source = std::fs::read_to_string(&app)?;
            source.push_str(&format!("# bench change {run}\n"));
            std::fs::write(&app, source)?;
            let (elapsed, built) = build(false)?;
            warm.push(elapsed.as_secs_f64());
            id = built;
        }
        results.push(Measurement {
            name: "warm rebuild, one-line app change".into(),
            unit: Unit::Seconds,
            samples: warm,
            target: Some(1.5),
            seed: Some("4-5 min"),
        });
        let built = engine.inspect(sh, &id)?.context("the bench image vanished")?;
        results.push(Measurement {
            name: "bytes our layers add over the base".into(),
            unit: Unit::Bytes,
            samples: vec![built.size.saturating_sub(base_facts.size) as f64],
            target: Some(30e6),
            seed: Some("2.04 GB whole image"),
        });

        // Built with the whole workspace's features, as the test build has them: the
        // CLI's dependencies are compiled once for both (`--package stigmer` alone would
        // turn fewer features on, and compile tokio, hyper and bollard again).
        cmd!(sh, "cargo build --quiet --workspace --features xtask/test-env --bin stigmer")
            .run()
            .context("building the CLI to measure")?;
        for engine in test_support::engine::Engine::ALL {
            eprintln!("==> stigmer server start, status, idle memory on {engine:?} ({runs}x)");
            results.extend(measure_server(sh, engine, &format!("{image}:local"), runs)?);
        }
        eprintln!(
            "==> stigmer server start without the image's byte code, as before it shipped any ({runs}x)"
        );
        results.push(measure_start_without_bytecode(sh, &format!("{image}:local"), runs)?);

        eprintln!("==> re-push of an unchanged multi-arch image, and verify-image");
        results.extend(measure_publish(sh, &context, runs)?);

        eprintln!("==> arm64 build time over amd64, build-platform and emulated dependencies ({runs}x)");
        results.extend(measure_arm64_ratio(sh, &engine, &context, runs, self.quick)?);

        eprintln!("==> release --snapshot: CLI sizes per target, then warm wall time ({runs}x)");
        results.extend(measure_release(sh, &base, runs, self.quick)?);

        let _ = cmd!(sh, "docker image rm --force --no-prune {image}:local")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run();
        report(sh, &results, &self.out, runs, self.no_fail)
    }
}

/// The bytes `docker build` would send: a `FROM scratch` copy of the context, built
/// by the engine itself so that `.dockerignore` is applied by its own rules.
fn context_size(sh: &Shell, context: &Path) -> anyhow::Result<u64> {
    let probe = tempfile::tempdir()?;
    let probe_context = probe.path().join("context");
    let source = context.join(".");
    cmd!(sh, "cp -a {source} {probe_context}").run()?;
    std::fs::write(probe.path().join("Dockerfile"), "FROM scratch\nCOPY . /context/\n")?;
    let dockerfile = probe.path().join("Dockerfile");
    let tag = test_support::unique_name("stigmer-bench-context");
    cmd!(sh, "docker build --quiet --no-cache --file {dockerfile} --tag {tag} {probe_context}")
        .quiet()
        .ignore_stdout()
        .run()?;
    let format = "{{.Size}}";
    let size = cmd!(sh, "docker image inspect --format {format} {tag}").quiet().read()?;
    cmd!(sh, "docker image rm --no-prune {tag}").quiet().ignore_stdout().run()?;
    Ok(size.trim().parse()?)
}

/// Start, status and memory on one engine, the image moved there from the default one.
fn measure_server(
    sh: &Shell,
    engine: test_support::engine::Engine,
    image: &str,
    runs: usize,
) -> anyhow::Result<Vec<Measurement>> {
    engine.provide(image);
    let _moved = (engine != test_support::engine::Engine::Docker20)
        .then(|| test_support::engine::ImageGuard::on(engine, [image]));
    let engine_name = engine.describe();
    let stigmer = project::root().join("target/debug/stigmer");
    let home = tempfile::tempdir()?;
    let name = test_support::unique_name("stigmer-bench");
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port().to_string();
    let _env = [
        sh.push_env("STIGMER_HOME", home.path()),
        sh.push_env("STIGMER_AGENT_RUNNER_NAME", &name),
        sh.push_env("STIGMER_AGENT_RUNNER_PORT", &port),
        sh.push_env("STIGMER_AGENT_RUNNER_IMAGE", image),
        sh.push_env("DOCKER_HOST", engine.host()),
    ];
    let (mut start, mut status, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        cmd!(sh, "{stigmer} server start").quiet().ignore_stderr().run().context("stigmer server start")?;
        start.push(started.elapsed().as_secs_f64());
        for _ in 0..5 {
            let started = Instant::now();
            cmd!(sh, "{stigmer} server status").quiet().ignore_stdout().run()?;
            status.push(started.elapsed().as_secs_f64());
        }
        // Idle: give it a moment after the health probes, then read the service's RSS.
        std::thread::sleep(Duration::from_secs(2));
        let format = "{{.State.Pid}}";
        let pid = cmd!(sh, "docker inspect --format {format} {name}").quiet().read()?;
        memory.push(rss_bytes(&format!("/proc/{}/status", pid.trim()))? as f64);
        cmd!(sh, "{stigmer} server stop").quiet().ignore_stderr().run()?;
    }
    Ok(vec![
        Measurement {
            name: format!("`stigmer server start` to healthy, {engine_name}"),
            unit: Unit::Seconds,
            samples: start,
            target: Some(1.5),
            seed: Some("about 3 s (container alone)"),
        },
        Measurement {
            name: format!("`stigmer server status`, {engine_name}"),
            unit: Unit::Seconds,
            samples: status,
            target: Some(0.1),
            seed: None,
        },
        Measurement {
            name: format!("agent-runner idle memory (RSS), {engine_name}"),
            unit: Unit::Bytes,
            samples: memory,
            target: Some(50e6),
            seed: Some("about 150 MB"),
        },
    ])
}

/// `stigmer server start` to healthy on Docker Engine 20.10 with `image` less the byte
/// code of our dependencies and application (whiteouts over their `__pycache__`): the
/// image as it was before byte code shipped, where every start compiled each module
/// it imported. Beside the same figure for the image itself, it is what the byte code buys.
fn measure_start_without_bytecode(sh: &Shell, image: &str, runs: usize) -> anyhow::Result<Measurement> {
    let context = tempfile::tempdir()?;
    std::fs::write(
        context.path().join("Dockerfile"),
        format!(
            "FROM {image}\nUSER root\n\
             RUN find /opt/stigmer/site-packages /app -name __pycache__ -prune -exec rm -rf {{}} +\n\
             USER 1000:1000\n"
        ),
    )?;
    let tag = format!("{}-no-bytecode:local", image.trim_end_matches(":local"));
    let dir = context.path();
    cmd!(sh, "docker build --quiet --tag {tag} {dir}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("building the image without byte code")?;
    let measured = measure_server(sh, test_support::engine::Engine::Docker20, &tag, runs);
    let _ =
        cmd!(sh, "docker image rm --force --no-prune {tag}").quiet().ignore_stdout().ignore_stderr().run();
    let start = measured?.into_iter().next().context("measure_server measured no start")?;
    Ok(Measurement {
        name: format!("{}, no byte code in the image (before it shipped)", start.name),
        target: None,
        seed: None,
        ..start
    })
}

/// Cold builds of both platforms by both dependency paths in the same run: arm64 time
/// over amd64 time. The build-platform path must cost about the same for both; the
/// emulated path is what it replaced, measured beside it.
fn measure_arm64_ratio(
    sh: &Shell,
    engine: &Engine,
    context: &Path,
    runs: usize,
    quick: bool,
) -> anyhow::Result<Vec<Measurement>> {
    let tag = test_support::unique_name("stigmer-bench-ratio");
    // The emulated builds are what the target is compared with, not a target: `--quick`
    // (the test suite's run) leaves out their minute of qemu.
    let paths: &[DependencyPath] = if quick {
        &[DependencyPath::BuildPlatform]
    } else {
        &[DependencyPath::BuildPlatform, DependencyPath::Emulated]
    };
    let mut ratios = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (index, &path) in paths.iter().enumerate() {
            let mut seconds = [0.0; 2];
            for (slot, platform) in Platform::ALL.into_iter().enumerate() {
                let base = test_support::base_image::tag(platform.arch());
                let tag = format!("{tag}:{}", platform.arch());
                seconds[slot] =
                    build_platform_timed(sh, engine, context, &base, platform, path, &tag)?.as_secs_f64();
            }
            ratios[index].push(seconds[1] / seconds[0]);
        }
    }
    let _ = cmd!(sh, "docker image rm --force --no-prune {tag}:amd64 {tag}:arm64")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    let [build_platform, emulated] = ratios;
    let mut measurements = vec![Measurement {
        name: "arm64 / amd64 cold build, dependencies prepared on the build platform".into(),
        unit: Unit::Ratio,
        samples: build_platform,
        target: Some(1.3),
        seed: Some("emulated: 4-10× (build-push-action#982)"),
    }];
    if !emulated.is_empty() {
        measurements.push(Measurement {
            name: "arm64 / amd64 cold build, emulated (`--allow-emulation`)".into(),
            unit: Unit::Ratio,
            samples: emulated,
            target: None,
            seed: None,
        });
    }
    Ok(measurements)
}

/// CLI binary and archive size per target from one `--all-targets` snapshot (this
/// machine's target only with `--quick`: the test suite's release rehearsal builds all
/// five, and more cold cross builds would cost the suite minutes), then the
/// README's main command, warm, timed end to end as a user runs it.
fn measure_release(sh: &Shell, base: &str, runs: usize, quick: bool) -> anyhow::Result<Vec<Measurement>> {
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    let work = tempfile::tempdir()?;
    let out = work.path().join("dist");
    let all_targets = (!quick).then_some("--all-targets");
    cmd!(sh, "{xtask} release --snapshot {all_targets...} --base-image {base} --out {out}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("the snapshot of the CLI targets")?;
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join(checksums::MANIFEST))?)?;
    // Under `cargo xtask test` the CLI is the tests' unoptimised build: its size says
    // nothing of the one that ships, so it is named as such and compared with nothing.
    let (profile, size_target) = if dist::profile_is_custom() {
        (", unoptimised (CARGO_PROFILE_RELEASE_*)", None)
    } else {
        ("", Some(8e6))
    };
    let mut results = Vec::new();
    for artifact in manifest["artifacts"].as_array().context("manifest.json has no artifacts")? {
        let target: Target = artifact["target"].as_str().unwrap_or_default().parse()?;
        // The binary as it ships, stamped, read from its archive.
        let archive = out.join(artifact["name"].as_str().unwrap_or_default());
        let binary = dist::read_binary(&archive)?;
        let platform = format!("{}-{}", target.os(), target.arch());
        results.push(Measurement {
            name: format!("CLI binary, {platform}{profile}"),
            unit: Unit::Bytes,
            samples: vec![binary.len() as f64],
            target: size_target,
            seed: size_target.and(Some("about 15 MB (Go CLI)")),
        });
        results.push(Measurement {
            name: format!("CLI {}, {platform}{profile}", if target.is_unix() { "tarball" } else { "zip" }),
            unit: Unit::Bytes,
            samples: vec![artifact["size"].as_f64().unwrap_or_default()],
            target: None,
            seed: None,
        });
    }
    let mut seconds = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        cmd!(sh, "{xtask} release --snapshot --base-image {base} --out {out}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .context("release --snapshot")?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    results.push(Measurement {
        name: "`release --snapshot`, warm (this machine's target and image)".into(),
        unit: Unit::Seconds,
        samples: seconds,
        target: Some(30.0),
        seed: Some("`make release-local-full`: 4-5 min"),
    });
    Ok(results)
}

/// A cold build (`--no-cache`) of the agent-runner in `context` for `platform` into the
/// engine, tagged `tag`, with its dependencies prepared by `path`; returns the wall time
/// of the whole build, preparation included. The bench divides the arm64 time by the
/// amd64 time for each path: the build-platform path should cost about the same for
/// both, the emulated one several times more for arm64.
fn build_platform_timed(
    sh: &Shell,
    engine: &Engine,
    context: &Path,
    base_image: &str,
    platform: Platform,
    path: DependencyPath,
    tag: &str,
) -> anyhow::Result<Duration> {
    let build_args = [("BASE_IMAGE", base_image.to_owned()), ("VERSION", "bench".to_owned())];
    let tags = [tag.to_owned()];
    let request = BuildRequest {
        context,
        platform,
        tags: &tags,
        labels: &[],
        build_args: &build_args,
        pull: false,
        no_cache: true,
    };
    let started = Instant::now();
    let id = engine.build_with(sh, &request, path)?;
    let elapsed = started.elapsed();
    let built = engine.inspect(sh, &id)?.context("the image just built is not in the engine")?;
    if built.architecture != platform.arch() {
        bail!(
            "the {platform} build of {tag} says {} in its config: pass a base image of that platform",
            built.architecture
        );
    }
    Ok(elapsed)
}

fn rss_bytes(status_file: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(status_file).with_context(|| format!("reading {status_file}"))?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .context("no VmRSS line")?;
    Ok(kb * 1024)
}

fn measure_publish(sh: &Shell, context: &Path, runs: usize) -> anyhow::Result<Vec<Measurement>> {
    let registry = test_support::registry::TestRegistry::start();
    let base = test_support::base_image::push_index(&registry);
    let _base_tag = test_support::engine::ImageGuard::new([base.clone()]);
    let repository: oci::Repository = registry.repository("agent-runner").parse()?;
    let connect = || {
        oci::block_on(Registry::connect(
            repository.clone(),
            oci_client::secrets::RegistryAuth::Anonymous,
            "anonymous".to_owned(),
            RetryPolicy::default(),
        ))
    };
    // The same content under two versions: the second push finds every blob there.
    let plan_for = |version: &semver::Version| publish_plan::PublishPlan {
        release: plan::compute(
            version,
            plan::Kind::Release,
            false,
            &repository,
            Some(&base),
            &plan::World::default(),
        ),
        repository: repository.clone(),
        platforms: Platform::ALL.to_vec(),
        builder: publish_plan::Builder::Engine,
        builder_reason: "the bench measures the engine builder".into(),
        base_image: Some(base.clone()),
        build_args: vec![("BASE_IMAGE", base.clone()), ("VERSION", "bench".to_owned())],
        context: context.to_path_buf(),
        credentials_source: "anonymous".to_owned(),
        explicit_auth: None,
        sbom_generator: None,
        cache_from: Vec::new(),
        cache_to: Vec::new(),
        no_cache: false,
        signer: None,
    };
    let publish = |patch: u64| -> anyhow::Result<Registry> {
        let client = connect();
        let plan = plan_for(&semver::Version::new(0, 0, patch));
        oci::block_on(publish::publish_steps(sh, &plan, &Steps::default(), &client))?;
        Ok(client)
    };
    publish(0)?;
    let uploads_before = registry.blob_uploads();
    let again = publish(1)?;
    if registry.blob_uploads() != uploads_before {
        bail!("the registry saw blob uploads during an unchanged re-push");
    }
    let (mut requests, mut seconds) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let client = connect();
        let started = Instant::now();
        oci::block_on(verify::verify(&client, "v0.0.1", &Platform::ALL, None, &["latest".to_owned()]))?;
        seconds.push(started.elapsed().as_secs_f64());
        requests.push(client.requests() as f64);
    }
    {
        Ok(vec![
            Measurement {
                name: "re-push of an unchanged 2-platform image: blob bytes".into(),
                unit: Unit::Bytes,
                samples: vec![again.uploaded_bytes() as f64],
                target: Some(0.0),
                seed: None,
            },
            Measurement {
                name: "`verify-image` registry requests".into(),
                unit: Unit::Count,
                samples: requests,
                target: None,
                seed: None,
            },
            Measurement {
                name: "`verify-image` time (local registry)".into(),
                unit: Unit::Seconds,
                samples: seconds,
                target: None,
                seed: None,
            },
        ])
    }
}

fn report(sh: &Shell, results: &[Measurement], out: &Path, runs: usize, no_fail: bool) -> anyhow::Result<()> {
    let format = "{{.Server.Version}}";
    let engine_version = cmd!(sh, "docker version --format {format}").quiet().read().unwrap_or_default();
    let machine = format!(
        "{} cores, {}, Docker Engine {engine_version}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH,
    );
    let mut table = String::from(
        "| measurement | median | min | max | target | old pipeline | |\n|---|---|---|---|---|---|---|\n",
    );
    for m in results {
        let sorted = m.sorted();
        table += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            m.name,
            m.show(m.median()),
            m.show(sorted[0]),
            m.show(sorted[sorted.len() - 1]),
            m.target.map(|t| format!("≤ {}", m.show(t))).unwrap_or_default(),
            m.seed.unwrap_or(""),
            m.verdict()
        );
    }
    let markdown = format!(
        "Measured on {machine}, {runs} run(s) each ({}).\n\n{table}",
        chrono::Utc::now().format("%Y-%m-%d")
    );
    let json: Vec<Value> = results
        .iter()
        .map(|m| {
            let sorted = m.sorted();
            json!({ "name": m.name, "median": m.median(), "min": sorted[0], "max": sorted[sorted.len() - 1],
                    "samples": m.samples, "target": m.target, "seed": m.seed, "verdict": m.verdict() })
        })
        .collect();
    let out = if out.is_absolute() { out.to_path_buf() } else { project::root().join(out) };
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results.md"), &markdown)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json!({ "machine": machine, "runs": runs, "results": json }))?,
    )?;
    println!("{markdown}");
    eprintln!("written: {} and results.json", out.join("results.md").display());
    let missed: Vec<&str> =
        results.iter().filter(|m| m.verdict() == "MISSED").map(|m| m.name.as_str()).collect();
    match (missed.is_empty(), no_fail) {
        (true, _) => {}
        (false, true) => eprintln!("targets missed: {}", missed.join("; ")),
        (false, false) => anyhow::bail!("targets missed: {} (--no-fail exits 0 anyway)", missed.join("; ")),
    }
    Ok(())
}
