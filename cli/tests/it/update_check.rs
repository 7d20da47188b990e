//! The newer-release notice against a local HTTP server standing in for GitHub's
//! latest-release API (`STIGMER_RELEASES_URL`): newer, same, older (a backport),
//! pre-release, down, slow and malformed answers; once a day; off switches.

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use test_support::engine::Engine;
use xshell::Cmd;

use crate::{run, text, Instance};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A server on a free loopback port answering every request with `answer` (after
/// `delay`), counting the requests. Its thread ends with the test binary.
struct Api {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl Api {
    fn answering(status: &'static str, body: String, delay: Duration) -> Api {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/repos/stigmer/stigmer/releases/latest", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                std::thread::spawn(move || {
                    let mut request = [0; 4096];
                    let _ = stream.read(&mut request);
                    std::thread::sleep(delay);
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                });
            }
        });
        Api { url, requests }
    }

    /// GitHub's answer for a release tagged `tag`.
    fn release(tag: &str, prerelease: bool) -> Api {
        let body =
            format!(r#"{{"tag_name":"{tag}","name":"{tag}","draft":false,"prerelease":{prerelease}}}"#);
        Api::answering("200 OK", body, Duration::ZERO)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// `stigmer server status` (no agent-runner: exit 4) asking `url`, with the notice on.
fn status<'a>(instance: &'a Instance, url: &str) -> Cmd<'a> {
    instance
        .stigmer(&["server", "status"])
        .env("STIGMER_RELEASES_URL", url)
        .env_remove("STIGMER_NO_UPDATE_CHECK")
        .env_remove("CI")
}

fn status_output(instance: &Instance, url: &str) -> String {
    let output = run(status(instance, url));
    assert_eq!(output.status.code(), Some(4), "the notice changed the exit code: {}", text(&output));
    text(&output)
}

#[test]
fn a_newer_release_is_noticed_asked_once_a_day_with_how_to_upgrade() {
    let api = Api::release("v99.0.0", false);
    let instance = Instance::without_image(Engine::Docker20);
    let shown = status_output(&instance, &api.url);
    assert!(
        shown.contains(&format!("A newer stigmer is out: 99.0.0 (this is {VERSION}). To upgrade:")),
        "{shown}"
    );
    // target/debug is not ~/.local/bin: the installer is told where this binary is.
    let dir = std::path::Path::new(crate::STIGMER).parent().unwrap();
    assert!(
        shown.contains(&format!(
            "curl -fsSL https://github.com/stigmer/stigmer/releases/latest/download/install.sh | \
             STIGMER_INSTALL_DIR={} sh",
            dir.display()
        )),
        "{shown}"
    );
    assert!(shown.contains("STIGMER_NO_UPDATE_CHECK=1 turns this notice off"), "{shown}");
    assert_eq!(api.requests(), 1);

    // The next command the same day: the same notice, from the cache.
    let shown = status_output(&instance, &api.url);
    assert!(shown.contains("A newer stigmer is out: 99.0.0"), "{shown}");
    assert_eq!(api.requests(), 1, "asked again within a day");
    assert!(instance.home.path().join("data/update-check.json").is_file());
}

#[test]
fn the_same_an_older_or_a_pre_release_is_never_offered() {
    for (api, what) in [
        (Api::release(&format!("v{VERSION}"), false), "the same release"),
        (Api::release("v0.0.9", false), "an older release (a backport)"),
        (Api::release("v99.0.0-rc.1", true), "a pre-release"),
        (Api::release("v99.0.0-rc.1", false), "a pre-release's version"),
    ] {
        let instance = Instance::without_image(Engine::Docker20);
        let shown = status_output(&instance, &api.url);
        assert!(!shown.contains("newer stigmer"), "{what}: {shown}");
        assert_eq!(api.requests(), 1, "{what}");
    }
}

#[test]
fn a_down_slow_or_malformed_server_says_nothing_and_costs_under_a_second() {
    let down = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
    };
    let slow = Api::answering("200 OK", r#"{"tag_name":"v99.0.0"}"#.to_owned(), Duration::from_secs(20));
    let malformed = Api::answering("200 OK", "<html>rate limited</html>".to_owned(), Duration::ZERO);
    let failing = Api::answering("403 Forbidden", r#"{"tag_name":"v99.0.0"}"#.to_owned(), Duration::ZERO);
    for (url, what) in [
        (down, "down"),
        (slow.url.clone(), "slow"),
        (malformed.url.clone(), "malformed"),
        (failing.url.clone(), "403"),
    ] {
        let instance = Instance::without_image(Engine::Docker20);
        let started = Instant::now();
        let shown = status_output(&instance, &url);
        let took = started.elapsed();
        assert!(!shown.contains("newer stigmer"), "{what}: {shown}");
        // The check's budget is 0.8 s beside the command; status itself takes ~20 ms.
        assert!(took < Duration::from_millis(1500), "{what}: status took {took:?}");
        // Asked again only the next day, however it answered.
        let again = status_output(&instance, &url);
        assert!(!again.contains("newer stigmer"), "{what}: {again}");
    }
    for (api, what) in [(&slow, "slow"), (&malformed, "malformed"), (&failing, "403")] {
        assert_eq!(api.requests(), 1, "{what}");
    }
}

#[test]
fn the_check_is_off_with_stigmer_no_update_check_and_in_ci() {
    let api = Api::release("v99.0.0", false);
    for (variable, value) in [("STIGMER_NO_UPDATE_CHECK", "1"), ("CI", "true")] {
        let instance = Instance::without_image(Engine::Docker20);
        let output = run(status(&instance, &api.url).env(variable, value));
        assert!(!text(&output).contains("newer stigmer"), "{variable}: {}", text(&output));
        assert!(!instance.home.path().join("data/update-check.json").exists(), "{variable}");
    }
    assert_eq!(api.requests(), 0);
}
