//! The model-based test: random sequences of releases, pre-releases, backports, reruns
//! of earlier jobs with the plans of their first run, jobs failing half-way, two
//! publishes of one version at once, version tags pushed by a third party (the next
//! patch's, and one far ahead of every release), `latest` or `vX` pointed at a third
//! party's index, and reruns
//! that build other bytes, run against the real release tool, a real registry, a real
//! git history, a real tap and the `gh` stand-in; the model checks the rules after every
//! step, and at the end (after every failed job is run again) that the pointers name
//! the newest release of their lines.
//!
//! The images are made once up front (a handful of contents, both platforms, pushed by
//! digest into a seed registry whose storage each sequence starts from): the release
//! jobs under test, `plan`, `image --merge`, `github-release` and `homebrew`, run for
//! real at every step. The jobs run as release.yml runs them, each with the plan its
//! release's first job wrote.
//!
//! Checked after every step:
//! - I1: a version tag, once seen, never names another digest; a version of ours names
//!   an index one of our image jobs made for it, never a third party's.
//! - I2: every pointer (`latest`, `vX.Y`, `vX`, GitHub's Latest, the formula) names a
//!   final release, only moves forward, and never past the newest release of its line;
//!   at the end, each names exactly the newest release of its line.
//! - I3: in every CLI_SEQUENCES-th sequence, each image job is followed by release.yml's
//!   CLI job (`verify-image` of the version tag, then `dist --image-digest` for this
//!   machine's target, a real stamped binary); every CLI built pins, by its own
//!   `--version`, the digest its version tag names, then and after every later step.
//! - I4: in every SIGNED-th sequence (signed, and a CLI sequence too), every release
//!   makes what release.yml's jobs make (the five archives pinned to the verified
//!   digest, checksums.txt signed, the notes), and `verify-release` passes every
//!   complete release at the end, reading what GitHub's stand-in published; it fails the
//!   newest one when a third party has moved one of its pointers, and when one of its
//!   archives is changed, naming the check each time.
//! - I5: with a signing key, nothing a third party pushed carries the release's signature.
//!
//! Not checked here: a CLI running its pin (the upgrade test starts it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use semver::Version;
use test_support::{cosign::KeyPair, git::TestRepo, github::GitHub, registry::TestRegistry, shell};
use xshell::cmd;

use crate::{release_artifacts::tarballs, XTASK};

/// Sequences with the fixed seeds 1..SEQUENCES, plus one random seed, printed.
const SEQUENCES: u64 = 50;
const STEPS: usize = 8;
/// Contents of the images made up front: each release takes the next.
const CONTENTS: usize = 6;
/// Every SIGNED-th sequence signs with a key and checks I4 (cosign and `verify-release`
/// cost seconds per release); a multiple of CLI_SEQUENCES, so that its CLIs are built.
const SIGNED: u64 = 10;
/// Every CLI_SEQUENCES-th sequence builds the CLI after each image job (a second or two
/// per release: the build is shared, the stamp and the archive are not).
const CLI_SEQUENCES: u64 = 5;

#[derive(Clone, Copy, Debug)]
enum Bump {
    Major,
    Minor,
    Patch,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Job {
    Image,
    GitHub,
    Homebrew,
}

#[derive(Clone, Debug)]
enum Action {
    Release(Bump),
    PreRelease,
    /// A patch on an older line (a maintenance branch), when there is one.
    Backport,
    /// "Re-run" of a job of the n-th release started (modulo), with its first plan.
    Rerun(usize, Job),
    /// A release whose job fails half-way: the registry refuses writes during the image
    /// job, or GitHub fails to publish.
    Failing(Bump, Job),
    /// Two image jobs of the next version at the same time, from its one commit. (Two
    /// writers of different bytes at once cannot be told apart by a registry, which has
    /// no compare-and-swap; the same commit builds the same bytes, and release.yml's
    /// concurrency group runs one release at a time.)
    Concurrent(Bump),
    /// A third party pushes the next patch's tag first; we release it (refused), then
    /// cut the patch after it, as the refusal says.
    ThirdParty,
    /// A third party pushes a version far ahead of ours (`v20.0.0` when we are at 1.x),
    /// which no release of ours will reach: it must hold no pointer back.
    ThirdPartyAhead,
    /// A third party points `latest` (or, when true, the next patch's `vX`) at its own
    /// index; `verify-release` of our newest release says so, and our next release
    /// (a patch) puts the pointer back.
    ThirdPartyMovesPointer(bool),
    /// The image job of the n-th release again, building other bytes (a new toolchain).
    Rebuilt(usize),
    /// The next release's image job is handed the platform digests another commit's
    /// image jobs pushed (the newest release's: a stale input of a rerun): refused, and
    /// nothing moves; then its own images publish.
    StrayDigests,
}

/// A deterministic generator (xorshift64*): a seed names a sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn actions(seed: u64) -> Vec<Action> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let bump = |rng: &mut Rng| [Bump::Patch, Bump::Patch, Bump::Minor, Bump::Major][rng.below(4) as usize];
    let job = |rng: &mut Rng| [Job::Image, Job::GitHub, Job::Homebrew][rng.below(3) as usize];
    (0..STEPS)
        .map(|_| match rng.below(23) {
            0..=5 => Action::Release(bump(&mut rng)),
            6 | 7 => Action::PreRelease,
            8..=10 => Action::Backport,
            11..=13 => Action::Rerun(rng.below(8) as usize, job(&mut rng)),
            14 | 15 => {
                let failing = if rng.below(2) == 0 { Job::Image } else { Job::GitHub };
                Action::Failing(bump(&mut rng), failing)
            }
            16 => Action::Concurrent(bump(&mut rng)),
            17 => Action::ThirdParty,
            18 => Action::ThirdPartyAhead,
            19 => Action::ThirdPartyMovesPointer(rng.below(2) == 0),
            20 | 21 => Action::Rebuilt(rng.below(8) as usize),
            _ => Action::StrayDigests,
        })
        .collect()
}

/// The world's CHANGELOG.md before its first release; `start` adds each release's section.
const CHANGELOG: &str = "# Changelog\n\n## [Unreleased]\n\n";

/// What every sequence starts from: platform images of each content, by digest, in a
/// registry's storage; and a third party's two-platform index.
struct Seed {
    registry: TestRegistry,
    /// A base the engine has, whose packages the engine builder's SBOM lists.
    base: String,
    /// (amd64, arm64) digests of each content.
    contents: Vec<[String; 2]>,
    /// `foreign/agent-runner:v0.0.1`, two platforms, built from another repository.
    foreign: String,
}

impl Seed {
    fn make() -> Seed {
        let registry = TestRegistry::start();
        let sh = shell();
        let host = registry.host();
        let context = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join("Dockerfile"), "FROM scratch\nCOPY app.txt /app.txt\n").unwrap();
        let ctx = context.path();
        let mut contents = Vec::new();
        for content in 0..=CONTENTS {
            let mut digests = Vec::new();
            for platform in ["linux/amd64", "linux/arm64"] {
                // Content per platform too: the legacy builder's cache of a `FROM scratch`
                // step ignores the platform, and would hand arm64 the amd64 image.
                std::fs::write(ctx.join("app.txt"), format!("content {content} for {platform}\n")).unwrap();
                let output = cmd!(
                    sh,
                    "{XTASK} image --push --by-digest --builder engine --platform {platform} --registry {host} --version v0.0.1 --context {ctx}"
                )
                .quiet()
                .ignore_status()
                .output()
                .unwrap();
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(output.status.success(), "building a seed image for {platform}:\n{stderr}");
                digests.push(String::from_utf8(output.stdout).unwrap().trim().to_owned());
            }
            contents.push([digests[0].clone(), digests[1].clone()]);
        }
        // The third party's image: the last content, merged and tagged elsewhere.
        let [amd64, arm64] = contents.pop().unwrap();
        let foreign_registry = format!("{host}/foreign");
        let repo = TestRepo::new();
        repo.write("README", "someone else's\n");
        let theirs = repo.commit_all("theirs");
        cmd!(sh, "skopeo copy --quiet --all --src-tls-verify=false --dest-tls-verify=false docker://{host}/agent-runner@{amd64} docker://{host}/foreign/agent-runner@{amd64}").run().unwrap();
        cmd!(sh, "skopeo copy --quiet --all --src-tls-verify=false --dest-tls-verify=false docker://{host}/agent-runner@{arm64} docker://{host}/foreign/agent-runner@{arm64}").run().unwrap();
        let [amd64, arm64] = [amd64, arm64].map(|d| registry.relabelled("foreign/agent-runner", &d, &theirs));
        let merged =
            cmd!(sh, "{XTASK} image --merge {amd64},{arm64} --registry {foreign_registry} --version v0.0.1")
                .env("XTASK_PROJECT_ROOT", repo.work())
                .quiet()
                .ignore_stdout()
                .output()
                .unwrap();
        assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
        let base = test_support::base_image::require("amd64");
        Seed { registry, base, contents, foreign: format!("{host}/foreign/agent-runner:v0.0.1") }
    }
}

/// One release the sequence started.
struct Release {
    version: Version,
    commit: String,
    dir: PathBuf,
    /// The content its first image job was built from.
    content: usize,
    done: Vec<Job>,
    /// Refused: a third party's image holds its version tag.
    burned: bool,
}

impl Release {
    fn plan(&self) -> PathBuf {
        self.dir.join("plan.json")
    }
}

/// One sequence's world and model.
struct World<'a> {
    seed: &'a Seed,
    registry: TestRegistry,
    github: GitHub,
    repo: TestRepo,
    tap: TestRepo,
    temp: tempfile::TempDir,
    keys: Option<&'a KeyPair>,
    releases: Vec<Release>,
    next_content: usize,
    /// I1: the digest each version tag named when first seen.
    version_tags: BTreeMap<String, String>,
    /// The index digests our image jobs published, by version tag.
    ours: BTreeMap<String, Vec<String>>,
    /// The digests a third party pushed.
    foreign: Vec<String>,
    /// I3: whether image jobs are followed by the CLI job, and the digest each CLI built
    /// pins, by version.
    cli: bool,
    pins: BTreeMap<Version, String>,
    /// I4: whether each release makes every asset release.yml makes, signed, so that
    /// `verify-release` can check it.
    verified: bool,
    /// I2: the version each pointer named at the last check.
    pointers: BTreeMap<String, Version>,
    log: Vec<String>,
}

impl<'a> World<'a> {
    fn new(seed: &'a Seed, keys: Option<&'a KeyPair>, cli: bool) -> World<'a> {
        let registry = TestRegistry::start_from(&seed.registry.storage());
        let repo = TestRepo::new();
        repo.write("CHANGELOG.md", CHANGELOG);
        repo.commit_all("start");
        World {
            seed,
            registry,
            github: GitHub::new(),
            repo,
            tap: crate::release_artifacts::tap(),
            temp: tempfile::tempdir().unwrap(),
            keys,
            releases: Vec::new(),
            next_content: 0,
            version_tags: BTreeMap::new(),
            ours: BTreeMap::new(),
            foreign: Vec::new(),
            cli,
            pins: BTreeMap::new(),
            verified: keys.is_some() && cli,
            pointers: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    fn finals(&self) -> impl Iterator<Item = &Version> {
        self.releases.iter().map(|r| &r.version).filter(|v| v.pre.is_empty())
    }

    fn next_version(&self, bump: Bump) -> Version {
        let highest = self.releases.iter().map(|r| &r.version).max().cloned();
        let Some(highest) = highest else { return Version::new(0, 1, 0) };
        let base = Version::new(highest.major, highest.minor, highest.patch);
        match (bump, highest.pre.is_empty()) {
            // After a pre-release, its release comes next.
            (_, false) => base,
            (Bump::Major, true) => Version::new(base.major + 1, 0, 0),
            (Bump::Minor, true) => Version::new(base.major, base.minor + 1, 0),
            (Bump::Patch, true) => Version::new(base.major, base.minor, base.patch + 1),
        }
    }

    /// A commit and tag for `version`, its assets, and its plan, as the plan job makes it.
    fn start(&mut self, version: Version) -> usize {
        let tag = format!("v{version}");
        self.repo.write("VERSION", &format!("{version}\n"));
        // Its section, which `release-notes` reads (newest first; each release's
        // commit holds the sections of those before it).
        let changelog = std::fs::read_to_string(self.repo.work().join("CHANGELOG.md")).unwrap();
        let section = format!("## [{version}] - 2026-12-05\n\n- Release {version}.\n\n");
        self.repo.write(
            "CHANGELOG.md",
            &changelog.replacen("## [Unreleased]\n\n", &format!("## [Unreleased]\n\n{section}"), 1),
        );
        let commit = self.repo.commit_all(&format!("release: {tag}"));
        self.repo.git(&["tag", &tag]);
        // As `cargo xtask release` pushes it: what counts as released is origin's tags.
        self.repo.git(&["push", "--quiet", "origin", &format!("refs/tags/{tag}")]);
        let dir = self.temp.path().join(&tag);
        tarballs(&dir, &version.to_string());
        let sh = shell();
        cmd!(sh, "{XTASK} checksums {dir}").quiet().ignore_stdout().ignore_stderr().run().unwrap();
        std::fs::write(dir.join("checksums.txt.sigstore.json"), "{}").unwrap();
        std::fs::write(dir.join("RELEASE_NOTES.md"), format!("Stigmer {tag}\n")).unwrap();
        let content = self.next_content % self.seed.contents.len();
        self.next_content += 1;
        self.releases.push(Release { version, commit, dir, content, done: Vec::new(), burned: false });
        let index = self.releases.len() - 1;
        let (host, plan) = (self.registry.host(), self.releases[index].plan());
        let out = self.xtask(index, cmd!(sh, "{XTASK} plan --version {tag} --registry {host} --out {plan}"));
        assert!(out.is_ok(), "the plan job failed: {out:?}");
        index
    }

    /// What a step that cannot be taken here does instead (every step acts): a patch.
    fn instead(&mut self, why: String) {
        self.log.push(format!("{why}: a patch release instead"));
        self.act(&Action::Release(Bump::Patch));
    }

    /// Runs an xtask command as a job of release `index`: at its commit, with GitHub's
    /// stand-in; returns its output, Err when it failed.
    fn xtask(&self, index: usize, cmd: xshell::Cmd<'_>) -> Result<String, String> {
        self.repo.git(&["checkout", "--quiet", "--detach", &self.releases[index].commit]);
        self.run(cmd)
    }

    /// Runs an xtask command in the repository as it is checked out now.
    fn run(&self, cmd: xshell::Cmd<'_>) -> Result<String, String> {
        let output = cmd
            .env("XTASK_PROJECT_ROOT", self.repo.work())
            .env("COSIGN_PASSWORD", test_support::cosign::PASSWORD)
            .envs(self.github.env())
            .quiet()
            .ignore_status()
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        if output.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// The image job of release `index`, as release.yml's `image` job runs it: the
    /// platform images of `content` merged under its plan (signed when the world signs).
    fn merge<'s>(&self, sh: &'s xshell::Shell, index: usize, content: usize) -> xshell::Cmd<'s> {
        // As the release's own image jobs push them: labelled with its commit.
        self.merge_built_at(sh, index, content, &self.releases[index].commit)
    }

    /// The platform images of release `index`'s content, as its by-digest jobs push
    /// them before the merge (the merge makes them too, when they are not there yet).
    fn platform_jobs(&self, index: usize) {
        let (content, commit) = (self.releases[index].content, &self.releases[index].commit);
        for digest in &self.seed.contents[content] {
            self.registry.relabelled("agent-runner", digest, commit);
        }
    }

    /// The image job of release `index` merging the platform images of `content` as the
    /// image jobs at `commit` pushed them.
    fn merge_built_at<'s>(
        &self,
        sh: &'s xshell::Shell,
        index: usize,
        content: usize,
        commit: &str,
    ) -> xshell::Cmd<'s> {
        let [amd64, arm64] = self.seed.contents[content]
            .each_ref()
            .map(|d| self.registry.relabelled("agent-runner", d, commit));
        let digests = format!("{amd64},{arm64}");
        let (plan, base) = (self.releases[index].plan(), &self.seed.base);
        let key: Vec<String> =
            self.keys.map(|k| vec!["--cosign-key".into(), k.key.display().to_string()]).unwrap_or_default();
        cmd!(sh, "{XTASK} image --merge {digests} --plan {plan} --base-image {base} {key...}")
    }

    fn image(&mut self, index: usize, content: usize) -> Result<String, String> {
        let sh = shell();
        let result = self.xtask(index, self.merge(&sh, index, content));
        self.published_by(index, &result);
        result
    }

    /// Records the index an image job says it published.
    fn published_by(&mut self, index: usize, result: &Result<String, String>) {
        let Ok(out) = result else { return };
        let digest =
            out.lines().find_map(|l| l.strip_prefix("==> published ")).and_then(|l| l.rsplit('@').next());
        let tag = format!("v{}", self.releases[index].version);
        self.ours.entry(tag).or_default().push(digest.expect("a published digest").to_owned());
    }

    fn job(&mut self, index: usize, job: Job) -> Result<String, String> {
        let sh = shell();
        let (plan, dir) = (self.releases[index].plan(), self.releases[index].dir.clone());
        let result = match job {
            // release.yml's `cli` jobs need the image job and nothing else: here they
            // count as its last step.
            Job::Image if self.cli => {
                self.image(index, self.releases[index].content).and_then(|out| Ok(out + &self.cli(index)?))
            }
            Job::Image => self.image(index, self.releases[index].content),
            Job::GitHub if self.verified => {
                // release.yml's release job: checksums, the notes naming the verified
                // digest, the signature, then GitHub.
                let Some(digest) = self.pins.get(&self.releases[index].version).cloned() else {
                    return Err("no CLI job has pinned this release's digest".to_owned());
                };
                let key = &self.keys.unwrap().key;
                self.xtask(index, cmd!(sh, "{XTASK} checksums {dir}"))
                    .and_then(|_| {
                        self.run(cmd!(
                            sh,
                            "{XTASK} release-notes --plan {plan} --dir {dir} --image-digest {digest}"
                        ))
                    })
                    .and_then(|_| self.run(cmd!(sh, "{XTASK} checksums {dir} --cosign-key {key}")))
                    .and_then(|_| self.run(cmd!(sh, "{XTASK} github-release --plan {plan} --dir {dir}")))
            }
            Job::GitHub => self.xtask(index, cmd!(sh, "{XTASK} github-release --plan {plan} --dir {dir}")),
            Job::Homebrew => {
                // release.yml runs it only when the plan says the formula moves.
                let text = std::fs::read_to_string(&plan).unwrap();
                let planned: serde_json::Value = serde_json::from_str(&text).unwrap();
                if planned["homebrew"]["moves"] != true {
                    return Ok("skipped: the plan moves no formula".to_owned());
                }
                let (sums, tap) = (dir.join("checksums.txt"), self.tap.work().to_owned());
                self.xtask(
                    index,
                    cmd!(sh, "{XTASK} homebrew --plan {plan} --checksums {sums} --tap {tap} --push"),
                )
            }
        };
        if result.is_ok() && !self.releases[index].done.contains(&job) {
            self.releases[index].done.push(job);
        }
        result
    }

    /// release.yml's CLI job for this machine's target: the digest the version tag names,
    /// verified, then `dist` pinned to it, from this checkout (the model's repository
    /// holds no CLI source). Records what the built binary says it pins.
    fn cli(&mut self, index: usize) -> Result<String, String> {
        let sh = shell();
        let release = &self.releases[index];
        let (plan, dir, version) = (release.plan(), release.dir.clone(), release.version.clone());
        let reference = format!("{}/agent-runner:v{version}", self.registry.host());
        let verified = self.xtask(index, cmd!(sh, "{XTASK} verify-image {reference} --json"))?;
        // As release.yml reads it (`jq .index_digest`), from the pretty JSON on stdout.
        let digest = verified
            .lines()
            .find_map(|line| line.trim().strip_prefix("\"index_digest\": \"")?.split('"').next())
            .ok_or(verified.clone())?
            .to_owned();
        // Every target when `verify-release` checks the release, else this machine's.
        let target = match self.verified {
            true => None,
            false => Some(format!("--target={}", crate::dist::host_triple())),
        };
        let root = test_support::project_root();
        let built = cmd!(sh, "{XTASK} dist --plan {plan} {target...} --out {dir} --image-digest {digest}")
            .env("XTASK_PROJECT_ROOT", &root)
            .quiet()
            .ignore_status()
            .output()
            .unwrap();
        if !built.status.success() {
            return Err(String::from_utf8_lossy(&built.stderr).into_owned());
        }
        // New checksums drop the old bundle; the release job signs them again.
        if !self.verified {
            std::fs::write(dir.join("checksums.txt.sigstore.json"), "{}").unwrap();
        }
        let archive = dir.join(format!("stigmer-v{version}-{}.tar.gz", crate::dist::host_platform()));
        let unpacked = tempfile::tempdir().unwrap();
        let into = unpacked.path();
        cmd!(sh, "tar -xzf {archive} -C {into} --strip-components 1").run().unwrap();
        let said = cmd!(sh, "{into}/stigmer --version").read().unwrap();
        let pinned = said
            .lines()
            .find_map(|line| line.strip_prefix("agent-runner:"))
            .and_then(|line| line.split('@').nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("the CLI of v{version} pins nothing:\n{said}"))
            .to_owned();
        self.pins.insert(version, pinned);
        Ok(format!("\n==> cli pinned to {digest}"))
    }

    /// Every job of a release, in `needs` order, stopping at the first failure.
    fn jobs(&mut self, index: usize) -> Result<(), String> {
        for job in [Job::Image, Job::GitHub, Job::Homebrew] {
            self.job(index, job)?;
        }
        Ok(())
    }

    fn act(&mut self, action: &Action) {
        let outcome = match action {
            Action::Release(bump) => {
                let index = self.start(self.next_version(*bump));
                self.jobs(index).map(|()| format!("released v{}", self.releases[index].version))
            }
            Action::PreRelease => {
                let next = self.next_version(Bump::Minor);
                let pre = Version { pre: semver::Prerelease::new("rc.1").unwrap(), ..next };
                let pre = match self.releases.iter().any(|r| r.version == pre) {
                    true => Version { pre: semver::Prerelease::new("rc.2").unwrap(), ..pre },
                    false => pre,
                };
                if self.releases.iter().any(|r| r.version == pre) {
                    return self.instead("pre-release: none left to cut".to_owned());
                }
                let index = self.start(pre);
                self.jobs(index).map(|()| format!("released v{}", self.releases[index].version))
            }
            Action::Backport => {
                let newest = self.finals().max().cloned();
                let line = self
                    .finals()
                    .filter(|v| newest.as_ref().is_some_and(|n| (v.major, v.minor) != (n.major, n.minor)))
                    .max()
                    .cloned();
                let Some(line) = line else { return self.instead("backport: no older line".to_owned()) };
                let highest_on_line = self
                    .releases
                    .iter()
                    .map(|r| &r.version)
                    .filter(|v| (v.major, v.minor) == (line.major, line.minor))
                    .max()
                    .unwrap()
                    .clone();
                let version = Version::new(line.major, line.minor, highest_on_line.patch + 1);
                let index = self.start(version);
                self.jobs(index).map(|()| format!("backported v{}", self.releases[index].version))
            }
            Action::Rerun(n, job) => {
                if self.releases.is_empty() {
                    return self.instead("rerun: nothing released yet".to_owned());
                }
                let index = n % self.releases.len();
                // A job runs only after the jobs it `needs:` succeeded, as on GitHub.
                let needs = match job {
                    Job::Image => None,
                    Job::GitHub => Some(Job::Image),
                    Job::Homebrew => Some(Job::GitHub),
                };
                if needs.is_some_and(|needed| !self.releases[index].done.contains(&needed)) {
                    return self.log.push(format!(
                        "rerun {job:?} of v{}: its needs failed",
                        self.releases[index].version
                    ));
                }
                let ran = self.job(index, *job);
                Ok(format!("reran {job:?} of v{}: {}", self.releases[index].version, summary(&ran)))
            }
            Action::Failing(bump, failing) => {
                let index = self.start(self.next_version(*bump));
                match failing {
                    Job::Image => {
                        // Its platform jobs pushed their images; then the registry
                        // refuses writes, in the merge.
                        self.platform_jobs(index);
                        self.registry.set_read_only(true);
                        let failed = self.job(index, Job::Image);
                        self.registry.set_read_only(false);
                        assert!(failed.is_err(), "an image job passed with the registry refusing writes");
                    }
                    _ => {
                        self.job(index, Job::Image).expect("the image job");
                        self.github.fail_once("edit --draft=false");
                        assert!(self.job(index, Job::GitHub).is_err(), "the GitHub job did not fail");
                    }
                }
                Ok(format!("v{}: the {failing:?} job failed", self.releases[index].version))
            }
            Action::Concurrent(bump) => {
                let index = self.start(self.next_version(*bump));
                // One commit's platform jobs, then its two merge jobs at once.
                self.platform_jobs(index);
                let (first, second) = std::thread::scope(|scope| {
                    let world = &*self;
                    let content = world.releases[index].content;
                    // No checkout: both run at the release's commit, which `start` made.
                    let merge = move || world.run(world.merge(&shell(), index, content));
                    let (a, b) = (scope.spawn(merge), scope.spawn(merge));
                    (a.join().unwrap(), b.join().unwrap())
                });
                self.published_by(index, &first);
                self.published_by(index, &second);
                if first.is_ok() || second.is_ok() {
                    // release.yml's CLI job follows the image job, as in `job`.
                    if self.cli {
                        if let Err(err) = self.cli(index) {
                            return self
                                .log
                                .push(format!("{action:?}: the CLI job failed: {}", last_line(&err)));
                        }
                    }
                    self.releases[index].done.push(Job::Image);
                    let rest = self.job(index, Job::GitHub).and_then(|_| self.job(index, Job::Homebrew));
                    rest.map(|_| format!("v{}: two image jobs at once", self.releases[index].version))
                } else {
                    Ok(format!("v{}: both concurrent image jobs refused", self.releases[index].version))
                }
            }
            Action::ThirdParty => {
                let version = self.next_version(Bump::Patch);
                self.pushed_by_a_third_party(&format!("v{version}"));
                let index = self.start(version.clone());
                let refused = self.job(index, Job::Image);
                let refused = refused.expect_err("a third party's image under the version tag was accepted");
                assert!(refused.contains("it is not this release's"), "{refused}");
                self.releases[index].burned = true;
                let next = self.start(Version::new(version.major, version.minor, version.patch + 1));
                self.jobs(next).map(|()| {
                    format!("v{version} refused (a third party's); v{} released", self.releases[next].version)
                })
            }
            Action::StrayDigests => {
                let Some(other) = self.releases.last().map(|release| release.commit.clone()) else {
                    return self.instead("stray digests: no other commit yet".to_owned());
                };
                let index = self.start(self.next_version(Bump::Patch));
                let content = self.releases[index].content;
                let stray = self.xtask(index, self.merge_built_at(&shell(), index, content, &other));
                self.published_by(index, &stray);
                let refused = stray.expect_err("images built from another commit were published");
                assert!(refused.contains(&format!("was built from {other}, not from ")), "{refused}");
                self.jobs(index).map(|()| {
                    format!(
                        "v{}: {}'s images refused, its own released",
                        self.releases[index].version,
                        &other[..7]
                    )
                })
            }
            Action::ThirdPartyAhead => {
                let highest = self.releases.iter().map(|r| r.version.major).max().unwrap_or(0);
                let tag = format!("v{}.0.0", highest + 20);
                self.pushed_by_a_third_party(&tag);
                Ok(format!("a third party pushed {tag}"))
            }
            Action::ThirdPartyMovesPointer(alias) => {
                if self.published(&self.registry.tags("agent-runner")).is_empty() {
                    return self.instead("a third party's pointer: nothing published yet".to_owned());
                }
                let next = self.next_version(Bump::Patch);
                let tag = match alias {
                    true => format!("v{}", next.major),
                    false => "latest".to_owned(),
                };
                self.pushed_by_a_third_party(&tag);
                // I4: a user checking our newest release is told.
                if let Some(index) = self.newest_complete().filter(|&index| {
                    self.verified && (tag == "latest" || self.releases[index].version.major == next.major)
                }) {
                    let assets = self.published_assets(index);
                    let failed = self.verify_release(index, &assets).unwrap_or_else(|err| panic!("{err}"));
                    let named = failed.iter().any(|(check, subject, _)| {
                        check == "pointer" && subject.ends_with(&format!("agent-runner:{tag}"))
                    });
                    assert!(
                        named,
                        "I4: verify-release v{} does not name {tag}, which a third party moved: {failed:?}",
                        self.releases[index].version
                    );
                }
                let index = self.start(next);
                self.jobs(index).map(|()| {
                    format!("a third party moved {tag}; v{} put it back", self.releases[index].version)
                })
            }
            Action::Rebuilt(n) => {
                if self.releases.is_empty() {
                    return self.instead("rebuild: nothing released yet".to_owned());
                }
                let index = n % self.releases.len();
                let count = self.seed.contents.len();
                let mut other = self.next_content % count;
                self.next_content += 1;
                if other == self.releases[index].content {
                    // Other bytes, not the same ones again (those are reused, rightly).
                    other = (other + 1) % count;
                }
                let published =
                    self.releases[index].done.contains(&Job::Image) && !self.releases[index].burned;
                let result = self.image(index, other);
                if published {
                    let refused =
                        result.as_ref().expect_err("another build was merged under a published version");
                    assert!(refused.contains("a published version never changes"), "{refused}");
                } else if result.is_ok() {
                    self.releases[index].done.push(Job::Image);
                    self.releases[index].content = other;
                }
                Ok(format!(
                    "rebuilt v{} from other bytes: {}",
                    self.releases[index].version,
                    summary(&result)
                ))
            }
        };
        self.log.push(format!(
            "{action:?}: {}",
            outcome.unwrap_or_else(|err| format!("a job failed: {}", last_line(&err)))
        ));
    }

    /// The third party's two-platform index, pushed under `tag` by someone with write
    /// access to the package.
    fn pushed_by_a_third_party(&mut self, tag: &str) {
        let sh = shell();
        let (foreign, host) = (&self.seed.foreign, self.registry.host());
        let target = format!("docker://{host}/agent-runner:{tag}");
        cmd!(sh, "skopeo copy --quiet --all --src-tls-verify=false --dest-tls-verify=false docker://{foreign} {target}")
            .run()
            .unwrap();
        let digest = self.registry.tags("agent-runner")[tag].clone();
        self.foreign.push(digest);
    }

    /// Every job of release `index` succeeded, and its version is ours.
    fn complete(&self, index: usize) -> bool {
        let release = &self.releases[index];
        !release.burned
            && [Job::Image, Job::GitHub, Job::Homebrew].iter().all(|job| release.done.contains(job))
    }

    /// The complete final release with the highest version.
    fn newest_complete(&self) -> Option<usize> {
        (0..self.releases.len())
            .filter(|&index| self.complete(index) && self.releases[index].version.pre.is_empty())
            .max_by(|&a, &b| self.releases[a].version.cmp(&self.releases[b].version))
    }

    /// Where GitHub's stand-in keeps what `github-release` uploaded for release `index`.
    fn published_assets(&self, index: usize) -> PathBuf {
        let tag = format!("v{}", self.releases[index].version);
        self.github.asset(&tag, "checksums.txt").parent().unwrap().to_owned()
    }

    /// `verify-release` of release `index` as a user runs it: on `assets` (what GitHub
    /// published, or a copy), with the notes GitHub shows and the release's public key;
    /// the checks that failed, as (check, subject, result).
    fn verify_release(
        &self,
        index: usize,
        assets: &std::path::Path,
    ) -> Result<Vec<(String, String, String)>, String> {
        let tag = format!("v{}", self.releases[index].version);
        let body = self.github.body(&tag).ok_or(format!("I4: GitHub holds no release {tag}"))?;
        let notes = self.temp.path().join(format!("{tag}-body.md"));
        std::fs::write(&notes, body).unwrap();
        let (host, tap, public) = (self.registry.host(), self.tap.remote(), &self.keys.unwrap().public);
        let sh = shell();
        // In the world's repository: origin's tags say which registry versions are ours.
        let output = cmd!(
            sh,
            "{XTASK} verify-release {tag} --dir {assets} --notes {notes} --registry {host} --tap {tap} --key {public} --json"
        )
        .env("XTASK_PROJECT_ROOT", self.repo.work())
        .quiet()
        .ignore_status()
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|_| format!("I4: verify-release {tag} wrote no report:\n{stderr}"))?;
        let failed: Vec<(String, String, String)> = (report["checks"].as_array().unwrap().iter())
            .filter(|check| check["ok"] == false)
            .map(|c| {
                let text = |key: &str| c[key].as_str().unwrap_or_default().to_owned();
                (text("check"), text("subject"), text("result"))
            })
            .collect();
        if failed.is_empty() != output.status.success() {
            return Err(format!(
                "I4: verify-release {tag}'s exit status disagrees with its report:\n{stderr}"
            ));
        }
        Ok(failed)
    }

    /// I4 at the end: `verify-release` passes every complete release, and fails the
    /// newest final one, naming the archive, when one of its archives is changed.
    fn check_verified(&self) -> Result<(), String> {
        if !self.verified {
            return Ok(());
        }
        for index in (0..self.releases.len()).filter(|&index| self.complete(index)) {
            let failed = self.verify_release(index, &self.published_assets(index))?;
            if !failed.is_empty() {
                let tag = format!("v{}", self.releases[index].version);
                return Err(format!("I4: verify-release fails the complete release {tag}: {failed:#?}"));
            }
        }
        let Some(index) = self.newest_complete() else { return Ok(()) };
        let changed = tempfile::tempdir().unwrap();
        crate::copy_files(&self.published_assets(index), changed.path());
        let archive =
            format!("stigmer-v{}-{}.tar.gz", self.releases[index].version, crate::dist::host_platform());
        let mut bytes = std::fs::read(changed.path().join(&archive)).unwrap();
        bytes.push(0);
        std::fs::write(changed.path().join(&archive), bytes).unwrap();
        let failed = self.verify_release(index, changed.path())?;
        let named = failed.iter().any(|(check, subject, _)| check == "checksum" && *subject == archive);
        if !named || failed.iter().any(|(_, subject, _)| *subject != archive) {
            return Err(format!("I4: with {archive} changed, verify-release names {failed:#?}"));
        }
        Ok(())
    }

    /// The versions a pointer may name: final releases of ours whose image is published,
    /// as the registry's `tags` say.
    fn published(&self, tags: &BTreeMap<String, String>) -> Vec<Version> {
        self.releases
            .iter()
            .filter(|r| {
                !r.burned && r.version.pre.is_empty() && tags.contains_key(&format!("v{}", r.version))
            })
            .map(|r| r.version.clone())
            .collect()
    }

    /// I1, I2 and I5 over what the registry, GitHub and the tap hold now.
    fn check(&mut self) -> Result<(), String> {
        let tags = self.registry.tags("agent-runner");
        let version_of_digest: BTreeMap<&String, Version> = tags
            .iter()
            .filter_map(|(tag, digest)| Some((digest, Version::parse(tag.strip_prefix('v')?).ok()?)))
            .collect();
        for (tag, digest) in &tags {
            // Version tags only: pointers are checked below, cosign's `sha256-….sig` and
            // `.att` tags are its own.
            if tag.strip_prefix('v').and_then(|version| Version::parse(version).ok()).is_none() {
                continue;
            }
            // I1
            match self.version_tags.get(tag) {
                Some(first) if first != digest => {
                    return Err(format!("I1: {tag} moved from {first} to {digest}"))
                }
                Some(_) => {}
                None => {
                    self.version_tags.insert(tag.clone(), digest.clone());
                }
            }
            let foreign = self.foreign.contains(digest);
            let ours = self.ours.get(tag).is_some_and(|digests| digests.contains(digest));
            if !foreign && !ours {
                return Err(format!("I1: {tag} names {digest}, which no image job of ours published for it"));
            }
        }
        let published = self.published(&tags);
        let mut pointers: Vec<(String, Option<Version>, Option<Version>)> = Vec::new();
        for (tag, digest) in &tags {
            if !is_pointer(tag) {
                continue;
            }
            let line = |v: &Version| match tag.as_str() {
                "latest" => true,
                _ => {
                    let parts: Vec<u64> = tag[1..].split('.').map(|p| p.parse().unwrap()).collect();
                    v.major == parts[0] && parts.get(1).is_none_or(|minor| v.minor == *minor)
                }
            };
            let highest = published.iter().filter(|v| line(v)).max().cloned();
            pointers.push((tag.clone(), version_of_digest.get(digest).cloned(), highest));
        }
        let releases = self.github.releases();
        let github_published: Vec<Version> = self
            .releases
            .iter()
            .filter(|r| {
                r.version.pre.is_empty()
                    && releases.iter().any(|g| g.tag == format!("v{}", r.version) && !g.draft)
            })
            .map(|r| r.version.clone())
            .collect();
        let latest = self.github.latest().map(|tag| Version::parse(&tag[1..]).unwrap());
        pointers.push(("GitHub's Latest".into(), latest.clone(), github_published.iter().max().cloned()));
        if latest.is_none() && !github_published.is_empty() {
            return Err(format!("I2: GitHub has published {github_published:?} and no Latest"));
        }
        let formula = self.formula();
        pointers.push(("the formula".into(), formula, published.iter().max().cloned()));
        for (name, names, highest) in pointers {
            let Some(names) = names else {
                if name.starts_with('v') || name == "latest" {
                    return Err(format!("I2: {name} names an index that is no version tag's"));
                }
                continue;
            };
            if !names.pre.is_empty() {
                return Err(format!("I2: {name} names the pre-release {names}"));
            }
            if let Some(before) = self.pointers.get(&name) {
                if names < *before {
                    return Err(format!("I2: {name} moved back from {before} to {names}"));
                }
            }
            if highest.as_ref().is_none_or(|highest| names > *highest) {
                return Err(format!(
                    "I2: {name} names {names}, beyond the newest release of its line ({highest:?})"
                ));
            }
            self.pointers.insert(name, names);
        }
        // I3
        for (version, pinned) in &self.pins {
            let tag = format!("v{version}");
            if tags.get(&tag) != Some(pinned) {
                return Err(format!(
                    "I3: the CLI of {tag} pins {pinned}, and {tag} names {:?}",
                    tags.get(&tag)
                ));
            }
        }
        // I5
        if let Some(keys) = self.keys {
            for digest in &self.foreign {
                let reference = format!("{}@{digest}", self.registry.repository("agent-runner"));
                let public = &keys.public;
                let sh = shell();
                let verified = cmd!(sh, "cosign verify --key {public} --insecure-ignore-tlog --allow-insecure-registry {reference}")
                    .quiet()
                    .ignore_stdout()
                    .ignore_stderr()
                    .run();
                if verified.is_ok() {
                    return Err(format!("I5: the third party's {digest} carries the release's signature"));
                }
            }
        }
        Ok(())
    }

    fn formula(&self) -> Option<Version> {
        let remote = self.tap.remote().to_str().unwrap().to_owned();
        let sh = shell();
        let text = cmd!(sh, "git --git-dir {remote} show main:Formula/stigmer.rb")
            .quiet()
            .ignore_stderr()
            .read()
            .ok()?;
        text.lines()
            .find_map(|line| Version::parse(line.trim().strip_prefix("version \"")?.strip_suffix('"')?).ok())
    }

    /// Every job that has not succeeded runs again (in release order, as a maintainer
    /// clicking "Re-run failed jobs" would); then every pointer names the newest release
    /// of its line.
    fn converge(&mut self) -> Result<(), String> {
        for index in 0..self.releases.len() {
            if self.releases[index].burned {
                continue;
            }
            for job in [Job::Image, Job::GitHub, Job::Homebrew] {
                if !self.releases[index].done.contains(&job) {
                    self.job(index, job)
                        .map_err(|err| format!("repairing v{}: {err}", self.releases[index].version))?;
                }
            }
        }
        self.check()?;
        let published = self.published(&self.registry.tags("agent-runner"));
        let newest = published.iter().max().cloned();
        for (name, names) in &self.pointers {
            let expected = match name.as_str() {
                "latest" | "GitHub's Latest" | "the formula" => newest.clone(),
                tag => {
                    let parts: Vec<u64> = tag[1..].split('.').map(|p| p.parse().unwrap()).collect();
                    published
                        .iter()
                        .filter(|v| v.major == parts[0] && parts.get(1).is_none_or(|minor| v.minor == *minor))
                        .max()
                        .cloned()
                }
            };
            if expected.as_ref() != Some(names) {
                return Err(format!(
                    "I2 at the end: {name} names {names}, not the newest of its line {expected:?}"
                ));
            }
        }
        for pointer in ["latest", "GitHub's Latest", "the formula"] {
            if newest.is_some() && !self.pointers.contains_key(pointer) {
                return Err(format!("I2 at the end: {pointer} names nothing, and {newest:?} is published"));
            }
        }
        self.check_verified()
    }
}

/// `latest`, `vX` or `vX.Y`: a floating tag, not a version's.
fn is_pointer(tag: &str) -> bool {
    tag == "latest"
        || tag.strip_prefix('v').is_some_and(|rest| {
            let parts: Vec<&str> = rest.split('.').collect();
            parts.len() <= 2 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn summary(result: &Result<String, String>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(err) => format!("failed: {}", last_line(err)),
    }
}

fn last_line(text: &str) -> String {
    text.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default().to_owned()
}

/// Runs `actions` in a fresh world; the failure, with the log, if a rule broke. A panic
/// in a step (an assertion about a job's output) is a failure too, so that a sequence
/// run on another thread can be reported by its seed and shrunk.
fn run(seed: &Seed, keys: Option<&KeyPair>, cli: bool, actions: &[Action]) -> Result<(), String> {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut world = World::new(seed, keys, cli);
        for (step, action) in actions.iter().enumerate() {
            world.act(action);
            world.check().map_err(|err| {
                format!("after step {} ({action:?}): {err}\n{}", step + 1, world.log.join("\n"))
            })?;
        }
        world.converge().map_err(|err| format!("{err}\n{}", world.log.join("\n")))
    }));
    attempt.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        Err(format!("a step panicked: {message}"))
    })
}

/// A failing sequence cut down to the steps that matter: each step is dropped in turn
/// while the sequence still fails.
fn shrink(seed: &Seed, keys: Option<&KeyPair>, cli: bool, mut actions: Vec<Action>) -> (Vec<Action>, String) {
    let mut failure = run(seed, keys, cli, &actions).unwrap_err();
    let mut i = 0;
    while i < actions.len() {
        let mut shorter = actions.clone();
        shorter.remove(i);
        match run(seed, keys, cli, &shorter) {
            Err(err) => (actions, failure) = (shorter, err),
            Ok(()) => i += 1,
        }
    }
    (actions, failure)
}

/// Sequences run at once, each in its own world (registry, git origin, tap, `gh`
/// stand-in): a step mostly waits on those processes, so two keep this machine's two
/// cores busy where one left them half idle, and the suite's longest test takes its
/// share of them beside the others.
const WORLDS_AT_ONCE: usize = 2;

#[test]
fn random_sequences_of_releases_reruns_failures_and_third_parties_keep_every_rule() {
    test_support::engine::require_engine();
    let seed = Seed::make();
    let keys = KeyPair::generate();
    let random =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let seeds: Vec<u64> = (1..SEQUENCES).chain([random]).collect();
    eprintln!("sequences: seeds 1..{SEQUENCES} and {random}; STIGMER_MODEL_SEED=N runs one");
    let seeds = match std::env::var("STIGMER_MODEL_SEED") {
        Ok(one) => vec![one.parse().expect("STIGMER_MODEL_SEED is a number")],
        Err(_) => seeds,
    };
    let settings = |seed_number: u64| {
        (seed_number.is_multiple_of(SIGNED).then_some(&keys), seed_number.is_multiple_of(CLI_SEQUENCES))
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..WORLDS_AT_ONCE {
            scope.spawn(|| loop {
                let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&seed_number) = seeds.get(at) else { break };
                if !failed.lock().unwrap().is_empty() {
                    break;
                }
                let (keys, cli) = settings(seed_number);
                if run(&seed, keys, cli, &actions(seed_number)).is_err() {
                    failed.lock().unwrap().push(seed_number);
                }
            });
        }
    });
    // The first failing seed, shrunk here, on one thread.
    let first_failed = failed.into_inner().unwrap().into_iter().min();
    if let Some(seed_number) = first_failed {
        let (keys, cli) = settings(seed_number);
        let (shrunk, failure) = shrink(&seed, keys, cli, actions(seed_number));
        panic!("seed {seed_number} breaks a rule; shrunk to {shrunk:?}:\n{failure}");
    }
}
