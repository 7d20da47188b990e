//! GitHub's releases, stood in for: `gh_stand_in.py` answers the `gh release`
//! subcommands the release tool runs, over a state directory, because GitHub's API
//! cannot be reached from our machines. This is the one part of a release the tests
//! cannot run for real; everything the tool decides from GitHub's answers is real.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A GitHub repository's releases in a temporary directory, and a `gh` that serves them.
pub struct GitHub {
    dir: tempfile::TempDir,
}

/// One release as the stand-in holds it.
#[derive(Debug, PartialEq, Eq)]
pub struct Release {
    pub tag: String,
    pub draft: bool,
    pub latest: bool,
    /// Asset names, in upload order.
    pub assets: Vec<String>,
}

impl Default for GitHub {
    fn default() -> Self {
        GitHub::new()
    }
}

impl GitHub {
    pub fn new() -> GitHub {
        let dir = tempfile::tempdir().expect("creating the gh stand-in's directory");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let gh = bin.join("gh");
        // The interpreter itself, not a `python3` found on PATH each call: pyenv's shim
        // costs 0.2 s a call, and a release runs `gh` several times. `-S`: the script
        // uses only the standard library, and skipping `site` saves a third of each
        // start (15 of 50 ms here; the model test makes about 1500 calls).
        let python = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is on PATH (README's prerequisites)");
        let python = String::from_utf8(python.stdout).unwrap();
        let script = include_str!("gh_stand_in.py").replacen(
            "#!/usr/bin/env python3",
            &format!("#!{} -S", python.trim()),
            1,
        );
        std::fs::write(&gh, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gh, std::fs::Permissions::from_mode(0o755)).unwrap();
        GitHub { dir }
    }

    /// The environment a command needs to reach this stand-in as `gh`: PATH with its
    /// `gh` first, and its state.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            ("PATH", format!("{}:{path}", self.dir.path().join("bin").display())),
            ("GH_STAND_IN_STATE", self.state().display().to_string()),
        ]
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The next `gh release` call whose arguments hold all of `words` fails once, as
    /// GitHub failing half-way would.
    pub fn fail_once(&self, words: &str) {
        std::fs::write(self.state().join("fail"), words).unwrap();
    }

    pub fn releases(&self) -> Vec<Release> {
        let Ok(text) = std::fs::read_to_string(self.state().join("releases.json")) else { return Vec::new() };
        let json: Value = serde_json::from_str(&text).expect("the stand-in's state is JSON");
        json.as_array()
            .unwrap()
            .iter()
            .map(|r| Release {
                tag: r["tagName"].as_str().unwrap().to_owned(),
                draft: r["isDraft"].as_bool().unwrap(),
                latest: r["isLatest"].as_bool().unwrap(),
                assets: r["assets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["name"].as_str().unwrap().to_owned())
                    .collect(),
            })
            .collect()
    }

    /// The notes (body) of the release `tag`, as `gh release view --json body` gives them.
    pub fn body(&self, tag: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.state().join("releases.json")).ok()?;
        let json: Value = serde_json::from_str(&text).expect("the stand-in's state is JSON");
        let release = json.as_array()?.iter().find(|r| r["tagName"] == tag)?;
        release["body"].as_str().map(str::to_owned)
    }

    /// The tag GitHub marks Latest.
    pub fn latest(&self) -> Option<String> {
        self.releases().into_iter().find(|r| r.latest).map(|r| r.tag)
    }

    /// Where an uploaded asset of `tag` is kept (what a user would download).
    pub fn asset(&self, tag: &str, name: &str) -> PathBuf {
        self.state().join("assets").join(tag).join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Serves the uploaded assets over HTTP on a loopback port, as
    /// `https://github.com/OWNER/NAME/releases/download/` serves them (`<url>/<tag>/<name>`),
    /// until dropped.
    pub fn serve_downloads(&self) -> Downloads {
        let assets = self.state().join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
            let child = std::process::Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
                .arg(&assets)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("python3 -m http.server");
            let mut downloads = Downloads { child, url: format!("http://127.0.0.1:{port}") };
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return downloads;
                }
                if downloads.child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        panic!("python3 -m http.server did not start");
    }
}

/// The release assets over HTTP; stops when dropped.
pub struct Downloads {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`, under which `<tag>/<asset>` is served.
    pub url: String,
}

impl Drop for Downloads {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
