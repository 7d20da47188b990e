//! `TestRegistry`: a real OCI registry (Debian's `docker-registry`, the CNCF
//! distribution registry 2.8) per test, on its own loopback port with its own storage,
//! so tests run in parallel. It can require htpasswd auth, be stopped and restarted on
//! the same port and storage (for half-way failures), and is killed on drop.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;
use xshell::cmd;

pub struct Credentials {
    pub username: String,
    pub password: String,
}

pub struct TestRegistry {
    dir: TempDir,
    port: u16,
    credentials: Option<Credentials>,
    child: Option<Child>,
    /// Refuse every write (distribution's `maintenance: readonly`), as a registry in
    /// maintenance does.
    read_only: bool,
    /// What `relabelled` made: (repository, digest, revision) to the copy's digest.
    relabelled: std::sync::Mutex<std::collections::HashMap<(String, String, String), String>>,
}

impl TestRegistry {
    /// A registry anyone may push to.
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(None)
    }

    /// A registry that needs a generated user and password for every request; the
    /// engine is logged in to it through [`TestRegistry::docker_config`].
    pub fn start_with_auth() -> TestRegistry {
        let credentials = Credentials {
            username: "stigmer-test".to_owned(),
            password: format!("pw-{:016x}", random_u64()),
        };
        TestRegistry::start_with(Some(credentials))
    }

    /// A registry anyone may push to, holding a copy of what `storage` (another
    /// registry's `storage()`, stopped or quiet) holds: expensive content made once and
    /// handed to many tests.
    pub fn start_from(storage: &Path) -> TestRegistry {
        TestRegistry::start_with_storage(None, Some(storage))
    }

    fn start_with(credentials: Option<Credentials>) -> TestRegistry {
        TestRegistry::start_with_storage(credentials, None)
    }

    fn start_with_storage(credentials: Option<Credentials>, from: Option<&Path>) -> TestRegistry {
        assert!(
            crate::on_path("docker-registry"),
            "`docker-registry` is not on PATH: run `bash ci/setup.sh` or `apt-get install docker-registry`"
        );
        let dir = tempfile::Builder::new()
            .prefix("stigmer-registry-")
            .tempdir()
            .expect("creating a temporary directory");
        if let Some(credentials) = &credentials {
            // Cost 4, the minimum: this file guards a throwaway registry, and every
            // request pays for the hash.
            let hash = bcrypt::hash(&credentials.password, 4).expect("hashing the test password");
            std::fs::write(dir.path().join("htpasswd"), format!("{}:{hash}\n", credentials.username))
                .unwrap();
        }
        if let Some(from) = from {
            let to = dir.path().join("storage");
            let status = Command::new("cp").arg("-a").arg(from).arg(&to).status().expect("running cp");
            assert!(status.success(), "copying the registry storage {}", from.display());
        }
        let mut registry = TestRegistry {
            dir,
            port: 0,
            credentials,
            child: None,
            read_only: false,
            relabelled: Default::default(),
        };
        // A free port can be taken by a parallel test between our probe and the
        // registry's bind: try a few.
        for _ in 0..5 {
            registry.port = free_loopback_port();
            if registry.spawn().is_ok() {
                registry.log_in_engine();
                return registry;
            }
        }
        panic!("docker-registry did not start; its log:\n{}", registry.log());
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<repository>`.
    pub fn repository(&self, repository: &str) -> String {
        format!("{}/{repository}", self.host())
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// A `DOCKER_CONFIG` directory logged in to this registry (empty without auth):
    /// pass it as `docker --config DIR ...` so tests never touch `~/.docker`.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    /// Where the registry keeps blobs and manifests, for tests that damage it.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// `user:password` for `skopeo --creds`, when the registry has auth.
    pub fn skopeo_creds(&self) -> Vec<String> {
        match &self.credentials {
            Some(c) => vec!["--creds".to_owned(), format!("{}:{}", c.username, c.password)],
            None => vec![],
        }
    }

    /// A copy of the image manifest `repository@digest` whose config says it was built
    /// from `revision` (its `org.opencontainers.image.revision` label), pushed by digest;
    /// returns the copy's digest. What an image job at that commit pushes, with the
    /// same layers, made in milliseconds instead of a build.
    pub fn relabelled(&self, repository: &str, digest: &str, revision: &str) -> String {
        let key = (repository.to_owned(), digest.to_owned(), revision.to_owned());
        if let Some(made) = self.relabelled.lock().unwrap().get(&key) {
            return made.clone();
        }
        let made = self.relabel(repository, digest, revision);
        self.relabelled.lock().unwrap().insert(key, made.clone());
        made
    }

    fn relabel(&self, repository: &str, digest: &str, revision: &str) -> String {
        let sh = crate::shell();
        let base = format!("http://{}/v2/{repository}", self.host());
        let login: &[String] = &match &self.credentials {
            Some(c) => vec!["--user".to_owned(), format!("{}:{}", c.username, c.password)],
            None => vec![],
        };
        let curl = |args: &[&str], url: &str| {
            cmd!(sh, "curl --silent --show-error --fail {login...} {args...} {url}").quiet()
        };
        let get = |url: String, accept: &str| curl(&["--header", accept], &url).output().unwrap().stdout;
        let accept = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&get(format!("{base}/manifests/{digest}"), accept)).unwrap();
        let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
        let mut config: serde_json::Value =
            serde_json::from_slice(&get(format!("{base}/blobs/{config_digest}"), "Accept: */*")).unwrap();
        if !config["config"]["Labels"].is_object() {
            config["config"]["Labels"] = serde_json::json!({});
        }
        config["config"]["Labels"]["org.opencontainers.image.revision"] = revision.into();
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = sha256_digest(&config);
        manifest["config"]["digest"] = config_digest.clone().into();
        manifest["config"]["size"] = config.len().into();
        let media_type =
            manifest["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json");
        let content_type = format!("Content-Type: {media_type}");
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let relabelled = sha256_digest(&manifest);
        let put_manifest = format!("{base}/manifests/{relabelled}");
        // A blob upload in two requests, as distribution takes it: POST for a location,
        // PUT the bytes to it with their digest.
        let headers = curl(
            &["--request", "POST", "--dump-header", "-", "--output", "/dev/null"],
            &format!("{base}/blobs/uploads/"),
        )
        .read()
        .unwrap();
        let location = headers
            .lines()
            .find_map(|line| line.strip_prefix("Location: ").or_else(|| line.strip_prefix("location: ")))
            .unwrap()
            .trim()
            .to_owned();
        let location = match location.starts_with("http") {
            true => location,
            false => format!("http://{}{location}", self.host()),
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put_blob = format!("{location}{separator}digest={config_digest}");
        let octets =
            ["--request", "PUT", "--header", "Content-Type: application/octet-stream", "--data-binary", "@-"];
        curl(&octets, &put_blob).stdin(config).ignore_stdout().run().unwrap();
        let put = ["--request", "PUT", "--header", &content_type, "--data-binary", "@-"];
        curl(&put, &put_manifest).stdin(manifest).ignore_stdout().run().unwrap();
        relabelled
    }

    /// Kills the registry; storage and port are kept for [`TestRegistry::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the registry refusing (or again accepting) every write, on the same
    /// port and storage.
    pub fn set_read_only(&mut self, read_only: bool) {
        self.read_only = read_only;
        self.restart();
    }

    /// Every tag of `repository` with the digest it names, read with the registry's
    /// own API (tags list, then a HEAD per tag).
    pub fn tags(&self, repository: &str) -> std::collections::BTreeMap<String, String> {
        let mut tags = std::collections::BTreeMap::new();
        let Some((200, _, body)) = http_request(self.port, "GET", &format!("/v2/{repository}/tags/list"))
        else {
            return tags;
        };
        let list: serde_json::Value = serde_json::from_str(&body).expect("a tags list");
        for tag in list["tags"].as_array().into_iter().flatten() {
            let tag = tag.as_str().unwrap();
            let head = http_head_digest(self.port, &format!("/v2/{repository}/manifests/{tag}"));
            if let Some(digest) = head {
                tags.insert(tag.to_owned(), digest);
            }
        }
        tags
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn().unwrap_or_else(|()| panic!("docker-registry did not restart; its log:\n{}", self.log()));
    }

    /// Every request the registry has answered so far, as (method, path), read from
    /// its own log: an account of the traffic that does not rely on the client's word.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.requests_with_query()
            .into_iter()
            .map(|(method, uri)| {
                let path = uri.split('?').next().unwrap_or_default().to_owned();
                (method, path)
            })
            .collect()
    }

    /// Every completed request as (method, URI with its query).
    fn requests_with_query(&self) -> Vec<(String, String)> {
        let field = |line: &str, name: &str| {
            let start = line.find(name)? + name.len();
            let rest = line[start..].trim_start_matches('"');
            let end = rest.find(['"', ' ']).unwrap_or(rest.len());
            Some(rest[..end].to_owned())
        };
        self.log()
            .lines()
            .filter(|line| line.contains("msg=\"response completed\""))
            .filter_map(|line| {
                Some((field(line, "http.request.method=")?, field(line, "http.request.uri=")?))
            })
            .collect()
    }

    /// How many blob uploads were started (`POST .../blobs/uploads/`), not counting
    /// the mount requests that prove push access (`?mount=`), which upload nothing.
    pub fn blob_uploads(&self) -> usize {
        self.requests_with_query()
            .iter()
            .filter(|(method, uri)| {
                method == "POST" && uri.contains("/blobs/uploads/") && !uri.contains("mount=")
            })
            .count()
    }

    /// The requests that could change what the registry holds (anything but GET and
    /// HEAD, and but the mount requests that prove push access).
    pub fn writes(&self) -> Vec<(String, String)> {
        self.requests_with_query()
            .into_iter()
            .filter(|(method, uri)| method != "GET" && method != "HEAD" && !uri.contains("mount="))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn spawn(&mut self) -> Result<(), ()> {
        let config = self.dir.path().join("config.yml");
        std::fs::write(&config, self.config()).unwrap();
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                eprintln!("docker-registry on port {} exited early: {status}", self.port);
                return Err(());
            }
            // 401 is an answer too: the registry is up and wants credentials.
            if matches!(http_status(self.port, "/v2/"), Some(200 | 401)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        Err(())
    }

    fn config(&self) -> String {
        let dir = self.dir.path().display();
        let auth = match self.credentials {
            Some(_) => format!("auth:\n  htpasswd:\n    realm: stigmer-test\n    path: {dir}/htpasswd\n"),
            None => String::new(),
        };
        let read_only = if self.read_only { "\n    readonly:\n      enabled: true" } else { "" };
        format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {dir}/storage\n  delete:\n    enabled: true\n\
             \x20 maintenance:\n    uploadpurging:\n      enabled: false{read_only}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: test-secret-{secret:x}\n\
             {auth}",
            port = self.port,
            secret = random_u64(),
        )
    }

    fn log_in_engine(&self) {
        let config = self.docker_config();
        std::fs::create_dir_all(&config).unwrap();
        let Some(credentials) = &self.credentials else { return };
        let sh = crate::shell();
        let (host, user, password) = (self.host(), &credentials.username, &credentials.password);
        cmd!(sh, "docker --config {config} login --username {user} --password-stdin {host}")
            .stdin(password)
            .quiet()
            .ignore_stdout()
            .run()
            .expect("docker login to the test registry");
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The data file of a blob in a registry's filesystem storage, for tests that damage
/// the registry on purpose.
pub fn blob_data_path(storage: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    storage.join(format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
}

fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding a loopback port");
    listener.local_addr().unwrap().port()
}

/// The status code of a plain HTTP/1.0 GET, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The status, head and body of a plain HTTP/1.0 request (manifests asked for in every
/// type we push), or `None` when nothing answers.
fn http_request(port: u16, method: &str, path: &str) -> Option<(u16, String, String)> {
    const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
    let mut stream =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: {ACCEPT}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Some((status, head.to_owned(), body.to_owned()))
}

/// The `Docker-Content-Digest` a HEAD of `path` answers with.
fn http_head_digest(port: u16, path: &str) -> Option<String> {
    let (status, head, _) = http_request(port, "HEAD", path)?;
    if status != 200 {
        return None;
    }
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("docker-content-digest").then(|| value.trim().to_owned())
    })
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(bytes);
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}
