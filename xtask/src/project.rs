//! Facts about the checkout that several commands stamp into what they build: the
//! workspace version, the git revision and the source date. Reading only; changing the
//! version is `release.rs`'s job.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use xshell::{cmd, Shell};

/// The workspace root: every shell xtask makes starts here. `XTASK_PROJECT_ROOT`
/// points it at another checkout; the release tests use that to cut releases in
/// throwaway repositories.
pub(crate) fn root() -> PathBuf {
    match std::env::var_os("XTASK_PROJECT_ROOT") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask/ has a parent").to_path_buf(),
    }
}

/// Cargo's target directory for what runs in `sh`: `CARGO_TARGET_DIR`, else target/ of
/// the shell's directory (the project's root, or the clone `--rebuild` builds in). dist
/// builds below it (`dist::DIST_DIRS`), and xtask keeps its caches there (compressed
/// layers, prepared dependencies): named by cargo's variable, so that every checkout
/// given one target directory (the tests' throwaway repositories, the rehearsal's jobs,
/// a rebuild's clone) shares them, as it shares cargo's builds.
pub(crate) fn target_dir(sh: &Shell) -> PathBuf {
    sh.var_os("CARGO_TARGET_DIR").map_or_else(|| sh.current_dir().join("target"), PathBuf::from)
}

/// `[workspace.package] version` of the root `Cargo.toml`: the one product version.
pub(crate) fn workspace_version(sh: &Shell) -> anyhow::Result<semver::Version> {
    let manifest = sh.read_file("Cargo.toml").context("reading Cargo.toml")?;
    let doc: toml_edit::DocumentMut = manifest.parse().context("parsing Cargo.toml")?;
    let version = doc["workspace"]["package"]["version"]
        .as_str()
        .context("Cargo.toml has no [workspace.package] version")?;
    semver::Version::parse(version).with_context(|| format!("Cargo.toml version {version:?} is not semver"))
}

/// The commit the build comes from, or `unknown` outside a git checkout (a source
/// tarball): a build must not fail for want of history.
pub(crate) fn git_revision(sh: &Shell) -> String {
    cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|rev| rev.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The time stamped into artifacts: `SOURCE_DATE_EPOCH` when set (the reproducible
/// builds convention), else the commit time, else the Unix epoch. Never "now": two
/// builds of one commit must agree.
pub(crate) fn source_date(sh: &Shell) -> anyhow::Result<DateTime<Utc>> {
    let epoch = match sh.var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch,
        Err(_) => cmd!(sh, "git log -1 --format=%ct").quiet().ignore_stderr().read().unwrap_or_default(),
    };
    let seconds: i64 = match epoch.trim() {
        "" => 0,
        text => text.parse().with_context(|| format!("SOURCE_DATE_EPOCH is not a number: {text:?}"))?,
    };
    DateTime::from_timestamp(seconds, 0).context("source date out of range")
}

/// The agent-runner's Dockerfile. Its `ARG BASE_IMAGE=` line is the one place the base
/// image is named: xtask reads its default from there, and `base-image --bump` rewrites
/// that line and no other.
pub(crate) const DOCKERFILE: &str = "agent-runner/Dockerfile";

const PIN_PREFIX: &str = "ARG BASE_IMAGE=";

/// The image every Dockerfile stage starts from, as a build names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BaseImage {
    /// What `FROM` names: `python:3.11-slim@sha256:...`.
    pub(crate) reference: String,
    /// The reference without its digest: `python:3.11-slim`.
    pub(crate) name: String,
    /// The index digest, when the reference has one.
    pub(crate) digest: Option<String>,
}

impl BaseImage {
    /// A base given on the command line (`--base-image`): any reference the engine can
    /// use, a digest or not (tests name images only their engine has).
    pub(crate) fn given(reference: &str) -> BaseImage {
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => (name.to_owned(), Some(digest.to_owned())),
            None => (reference.to_owned(), None),
        };
        BaseImage { reference: reference.to_owned(), name, digest }
    }

    /// The Dockerfile's pin: `name:tag@sha256:<64 hex>` and nothing else. The tag says
    /// what `--bump` follows, the digest what every build uses.
    pub(crate) fn pinned(text: &str) -> anyhow::Result<BaseImage> {
        let well_formed = text.split_once('@').is_some_and(|(name, digest)| {
            let last = name.rsplit('/').next().unwrap_or(name);
            let tagged = last.split_once(':').is_some_and(|(repo, tag)| !repo.is_empty() && !tag.is_empty());
            let hex = digest.strip_prefix("sha256:").unwrap_or_default();
            tagged
                && !text.contains(char::is_whitespace)
                && hex.len() == 64
                && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !well_formed {
            anyhow::bail!(
                "{DOCKERFILE} pins the base image as {text:?}, not as NAME:TAG@sha256:<64 hex>: \
                 run `cargo xtask base-image --bump`, which pins the index its tag names now \
                 (for another base, first write its tag alone: `{PIN_PREFIX}NAME:TAG`)"
            );
        }
        Ok(BaseImage::given(text))
    }

    /// The Dockerfile's build arguments that name the base: `FROM` and the
    /// `org.opencontainers.image.base.*` labels. The name is fully qualified
    /// (`docker.io/library/python:3.11-slim`), as the OCI annotations spec asks and as
    /// Docker reads a short name. A base given without a digest gets an empty digest
    /// label: one LABEL serves every build, so it cannot be left out for some, and an
    /// empty value says "not pinned" where any other would claim a digest nobody checked.
    pub(crate) fn build_args(&self) -> [(&'static str, String); 3] {
        let qualified =
            self.name.parse::<oci_client::Reference>().map_or(self.name.clone(), |name| name.whole());
        [
            ("BASE_IMAGE", self.reference.clone()),
            ("BASE_NAME", qualified),
            ("BASE_DIGEST", self.digest.clone().unwrap_or_default()),
        ]
    }
}

/// The `ARG BASE_IMAGE=` line of a Dockerfile's text: its index among the lines and its
/// value. Exactly one: a second would make "the pin" ambiguous.
pub(crate) fn pin_line(dockerfile: &str) -> anyhow::Result<(usize, &str)> {
    let mut found = dockerfile
        .lines()
        .enumerate()
        .filter_map(|(index, line)| Some((index, line.strip_prefix(PIN_PREFIX)?.trim_end())));
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => anyhow::bail!(
            "{DOCKERFILE} has no `{PIN_PREFIX}` line: add `{PIN_PREFIX}NAME:TAG@sha256:<digest>` \
             before its first FROM, then run `cargo xtask base-image --bump`"
        ),
        (Some(_), Some(_)) => {
            anyhow::bail!("{DOCKERFILE} has more than one `{PIN_PREFIX}` line: keep one, the pin")
        }
    }
}

/// The base image this checkout's Dockerfile pins, refused unless pinned by digest.
/// `None` when the checkout has no agent-runner Dockerfile (a tree that builds no image).
pub(crate) fn pinned_base(sh: &Shell) -> anyhow::Result<Option<BaseImage>> {
    let path = sh.current_dir().join(DOCKERFILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = sh.read_file(&path).with_context(|| format!("reading {}", path.display()))?;
    let (_, pin) = pin_line(&text)?;
    BaseImage::pinned(pin).map(Some)
}

/// The base a build uses: `--base-image` when given, else the plan's, else the
/// Dockerfile's pin.
pub(crate) fn base_for_build(
    sh: &Shell,
    given: Option<&str>,
    planned: Option<&str>,
) -> anyhow::Result<BaseImage> {
    match given.or(planned) {
        Some(reference) => Ok(BaseImage::given(reference)),
        None => pinned_base(sh)?.with_context(|| {
            format!("this checkout has no {DOCKERFILE} to read the base image from: give --base-image REF")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff";

    #[test]
    fn a_pin_names_a_tag_and_an_index_digest() {
        let pin = BaseImage::pinned(&format!("python:3.11-slim@{DIGEST}")).unwrap();
        assert_eq!((pin.name.as_str(), pin.digest.as_deref()), ("python:3.11-slim", Some(DIGEST)));
        let mirrored =
            BaseImage::pinned(&format!("127.0.0.1:5000/library/python:3.11-slim@{DIGEST}")).unwrap();
        assert_eq!(mirrored.name, "127.0.0.1:5000/library/python:3.11-slim");
        let [_, name, digest] = pin.build_args();
        assert_eq!(name, ("BASE_NAME", "docker.io/library/python:3.11-slim".to_owned()));
        assert_eq!(digest, ("BASE_DIGEST", DIGEST.to_owned()));
        let [_, _, digest] = BaseImage::given("stigmer-test-base:amd64").build_args();
        assert_eq!(digest, ("BASE_DIGEST", String::new()));
    }

    #[test]
    fn a_tag_alone_or_a_digest_alone_is_refused_naming_the_bump() {
        let short = format!("python:3.11-slim@{}", &DIGEST[..40]);
        let no_tag = format!("python@{DIGEST}");
        let port_no_tag = format!("127.0.0.1:5000/python@{DIGEST}");
        for bad in ["python:3.11-slim", no_tag.as_str(), port_no_tag.as_str(), short.as_str(), ""] {
            let err = BaseImage::pinned(bad).unwrap_err().to_string();
            assert!(err.contains("cargo xtask base-image --bump"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_pin_is_the_one_base_image_line() {
        let text = format!("# c\nARG BASE_IMAGE=python:3.11-slim@{DIGEST}\nFROM ${{BASE_IMAGE}}\n");
        assert_eq!(pin_line(&text).unwrap(), (1, format!("python:3.11-slim@{DIGEST}").as_str()));
        assert!(pin_line("FROM scratch\n").unwrap_err().to_string().contains("base-image --bump"));
        let twice = format!("{text}ARG BASE_IMAGE=python:3.12-slim\n");
        assert!(pin_line(&twice).unwrap_err().to_string().contains("more than one"));
    }
}
