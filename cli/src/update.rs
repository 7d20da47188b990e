//! The newer-release notice: whether a newer `stigmer` is published (GitHub's
//! latest-release API, or `STIGMER_RELEASES_URL`), asked at most once a day with the
//! answer cached in `data/update-check.json`, and how to upgrade for how this binary
//! was installed (Homebrew, the installer or an archive). Off with
//! `STIGMER_NO_UPDATE_CHECK=1`, when `CI` is set, and in builds not made by `cargo
//! xtask dist` unless `STIGMER_RELEASES_URL` is set (a development build has no release
//! to compare with). It must never fail or slow a command: every error means no
//! notice, and the request runs beside the command within `BUDGET`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};

use crate::{build_info, home::Home};

const DEFAULT_URL: &str = "https://api.github.com/repos/stigmer/stigmer/releases/latest";
const RELEASES: &str = "https://github.com/stigmer/stigmer/releases";
/// How long a command may wait for the answer, counted from when the check started
/// (beside the command): a slow or silent server costs at most this, once a day.
const BUDGET: Duration = Duration::from_millis(800);
const DAY_SECS: u64 = 24 * 60 * 60;

/// A check under way, started beside the command.
pub(crate) struct Check {
    task: tokio::task::JoinHandle<Option<String>>,
    started: tokio::time::Instant,
}

/// Starts the check when it is on; `finish` prints the notice, if any.
pub(crate) fn start(home: &Home) -> Option<Check> {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if env("STIGMER_NO_UPDATE_CHECK").is_some_and(|value| value != "0") || env("CI").is_some() {
        return None;
    }
    let url = match env("STIGMER_RELEASES_URL") {
        Some(url) => url,
        None if build_info::is_released() => DEFAULT_URL.to_owned(),
        None => return None,
    };
    let cache = home.data_dir().join("update-check.json");
    let started = tokio::time::Instant::now();
    Some(Check { task: tokio::spawn(latest_release(url, cache)), started })
}

impl Check {
    /// Waits what is left of `BUDGET`, then prints the notice on stderr when a newer
    /// release is out.
    pub(crate) async fn finish(self) {
        let left = BUDGET.saturating_sub(self.started.elapsed());
        let Ok(Ok(Some(latest))) = tokio::time::timeout(left, self.task).await else { return };
        if let Some(notice) = notice(build_info::version(), &latest, std::env::current_exe().ok().as_deref())
        {
            eprintln!("\n{notice}");
        }
    }
}

/// The latest release's version (`1.3.0`) from the cache when it is less than a day
/// old and from the same URL, else from `url` (and then cached, failures too, so a
/// server that is down is asked again only the next day). `None` when unknown.
async fn latest_release(url: String, cache: PathBuf) -> Option<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let cached: Value =
        std::fs::read(&cache).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
    let same_url = cached["url"] == url.as_str();
    let known = cached["latest"].as_str().filter(|_| same_url).map(str::to_owned);
    let fresh = cached["checked"].as_u64().is_some_and(|checked| now.saturating_sub(checked) < DAY_SECS);
    if fresh && same_url {
        return known;
    }
    // Recorded before asking: a server too slow for the command's wait is asked again
    // the next day, not by every command.
    write_cache(&cache, &json!({ "checked": now, "url": url, "latest": known }));
    let latest = fetch(&url).await.as_ref().and_then(release_version);
    write_cache(&cache, &json!({ "checked": now, "url": url, "latest": latest }));
    latest
}

/// Best effort: without a cache the next command asks again.
fn write_cache(cache: &Path, record: &Value) {
    let Some(dir) = cache.parent() else { return };
    if std::fs::create_dir_all(dir).is_ok() {
        let partial = cache.with_extension("json.partial");
        if std::fs::write(&partial, record.to_string()).is_ok() {
            let _ = std::fs::rename(&partial, cache);
        }
    }
}

/// The JSON body of a GET of `url` through the system's `curl`, or `None` for any
/// failure (curl missing included). Not a TLS stack in the CLI: rustls needs ring, whose
/// C build wants a musl C compiler for the native Linux build that `dist` does not
/// have, and curl is on macOS, Linux distributions and Windows 10 and later. It runs on
/// a blocking thread; `--max-time` ends it when the command no longer waits.
async fn fetch(url: &str) -> Option<Value> {
    let url = url.to_owned();
    let agent = format!("stigmer/{}", build_info::version());
    let body = tokio::task::spawn_blocking(move || {
        let sh = xshell::Shell::new().ok()?;
        xshell::cmd!(
            sh,
            "curl --fail --silent --location --max-time 5 --proto =https,http
                --header 'Accept: application/vnd.github+json' --user-agent {agent} {url}"
        )
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
    })
    .await
    .ok()??;
    serde_json::from_str(&body).ok()
}

/// The version of a GitHub release object (`tag_name` `v1.3.0` gives `1.3.0`); `None`
/// for a draft, a pre-release (never offered), or anything else.
fn release_version(release: &Value) -> Option<String> {
    if release["prerelease"] == true || release["draft"] == true {
        return None;
    }
    let tag = release["tag_name"].as_str()?;
    let version = tag.strip_prefix('v').unwrap_or(tag);
    let (_, pre) = parse(version)?;
    pre.is_none().then(|| version.to_owned())
}

/// `X.Y.Z` and its pre-release part, if any; `None` when it is not such a version.
fn parse(version: &str) -> Option<([u64; 3], Option<&str>)> {
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version.split('+').next()?, None),
    };
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    let triple = [parts.next()??, parts.next()??, parts.next()??];
    parts.next().is_none().then_some((triple, pre))
}

/// The notice when `latest` is newer than `current`, with the upgrade for how the
/// binary at `exe` was installed. An older latest (this is a backport) or the same
/// version says nothing.
fn notice(current: &str, latest: &str, exe: Option<&Path>) -> Option<String> {
    let (ours, our_pre) = parse(current)?;
    let (theirs, None) = parse(latest)? else { return None };
    // As semver orders them: 1.3.0 is newer than 1.3.0-rc.1.
    if theirs < ours || (theirs == ours && our_pre.is_none()) {
        return None;
    }
    let upgrade = match exe {
        Some(exe) if installed_by_homebrew(exe) => "brew upgrade stigmer".to_owned(),
        // No installer for Windows: the zip, by hand.
        Some(exe) if cfg!(windows) => format!(
            "download stigmer-v{latest}-windows-amd64.zip from {RELEASES}/tag/v{latest} and replace {}",
            exe.display()
        ),
        Some(exe) => {
            let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
            let default = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/bin"));
            let into = if Some(&dir) == default.as_ref() {
                String::new()
            } else {
                format!("STIGMER_INSTALL_DIR={} ", dir.display())
            };
            format!(
                "curl -fsSL {RELEASES}/latest/download/install.sh | {into}sh\n  (or download the archive for \
                 your platform from {RELEASES}/tag/v{latest} and replace {})",
                exe.display()
            )
        }
        None => format!("download it from {RELEASES}/tag/v{latest}"),
    };
    Some(format!(
        "A newer stigmer is out: {latest} (this is {current}). To upgrade:\n  {upgrade}\n\
         (STIGMER_NO_UPDATE_CHECK=1 turns this notice off.)"
    ))
}

/// Homebrew keeps every formula's files in its Cellar (`/opt/homebrew/Cellar`,
/// `/usr/local/Cellar`, `/home/linuxbrew/.linuxbrew/Cellar`), and `bin/stigmer` links
/// there.
fn installed_by_homebrew(exe: &Path) -> bool {
    let resolved = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    resolved.components().any(|part| part.as_os_str() == "Cellar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_their_pre_release_part() {
        assert_eq!(parse("1.3.0"), Some(([1, 3, 0], None)));
        assert_eq!(parse("1.3.0-rc.1"), Some(([1, 3, 0], Some("rc.1"))));
        assert_eq!(parse("0.1.1-snapshot-abc1234"), Some(([0, 1, 1], Some("snapshot-abc1234"))));
        for bad in ["", "1.3", "1.3.0.1", "v1.3.0", "1.x.0"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_a_newer_final_release_is_offered() {
        let exe = Path::new("/usr/local/bin/stigmer");
        assert!(notice("1.2.0", "1.3.0", Some(exe)).is_some());
        assert!(notice("1.2.0", "1.2.0", Some(exe)).is_none());
        assert!(notice("1.3.0", "1.2.4", Some(exe)).is_none(), "a backport is not an upgrade");
        assert!(notice("1.2.0", "1.3.0-rc.1", Some(exe)).is_none());
        assert!(notice("1.3.0-rc.1", "1.3.0", Some(exe)).is_some(), "the release of this rc");
        assert!(notice("1.3.0-rc.1", "1.3.1", Some(exe)).is_some());
    }

    #[test]
    fn the_upgrade_is_said_for_how_it_was_installed() {
        let brewed = tempfile::tempdir().unwrap();
        let cellar = brewed.path().join("Cellar/stigmer/1.2.0/bin");
        std::fs::create_dir_all(&cellar).unwrap();
        std::fs::write(cellar.join("stigmer"), "").unwrap();
        std::fs::create_dir_all(brewed.path().join("bin")).unwrap();
        let link = brewed.path().join("bin/stigmer");
        std::os::unix::fs::symlink(cellar.join("stigmer"), &link).unwrap();
        let text = notice("1.2.0", "1.3.0", Some(&link)).unwrap();
        assert!(text.contains("A newer stigmer is out: 1.3.0 (this is 1.2.0)"), "{text}");
        assert!(text.contains("\n  brew upgrade stigmer\n"), "{text}");

        let text = notice("1.2.0", "1.3.0", Some(Path::new("/opt/tools/stigmer"))).unwrap();
        assert!(
            text.contains(&format!(
                "curl -fsSL {RELEASES}/latest/download/install.sh | STIGMER_INSTALL_DIR=/opt/tools sh"
            )),
            "{text}"
        );
        assert!(text.contains(&format!("{RELEASES}/tag/v1.3.0 and replace /opt/tools/stigmer")), "{text}");
    }
}
