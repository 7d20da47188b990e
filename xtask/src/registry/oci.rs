//! The OCI registry client as xtask uses it (`oci-client`): a `Registry` handle per
//! repository with credentials resolved once, every request retried with backoff on
//! transient failures, and counters for requests and uploaded bytes. It hashes every
//! manifest it fetches instead of trusting the registry's `Docker-Content-Digest`
//! header, and pushes manifests as exact bytes so that digests stay ours.
//!
//! It must not print credentials, nor put them in an error.

use std::{
    future::Future,
    str::FromStr,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use anyhow::{bail, Context};
use oci_client::{
    client::{ClientConfig, ClientProtocol},
    errors::OciDistributionError,
    secrets::RegistryAuth,
    Client, Reference,
};

use crate::registry::{
    digest::sha256_digest,
    document::{self, is_attestation, Document},
};

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The OCI empty descriptor's content, `{}`: what the push-access check names.
const EMPTY_JSON_DIGEST: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// The annotation (on an index) and label (on an image config) that name the commit.
pub(crate) const REVISION_KEY: &str = "org.opencontainers.image.revision";

/// Every manifest type we understand; sent as `Accept` so that a registry never
/// answers an index request with one platform's manifest (distribution#2395).
const ACCEPTED_MANIFESTS: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Runs a registry future to completion on xtask's one runtime. xtask is a
/// sequential program; the runtime is made once and never dropped, so no command
/// needs one of its own.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("starting tokio")
        })
        .block_on(future)
}

/// A `Registry` for `repository` with credentials resolved the usual way
/// (`credentials::resolve`), and where they came from.
pub(crate) fn connect(
    sh: &xshell::Shell,
    repository: &Repository,
    login: Option<crate::registry::credentials::ExplicitLogin>,
) -> anyhow::Result<Registry> {
    let (auth, source) = crate::registry::credentials::resolve(sh, &repository.registry, login)?;
    Ok(block_on(Registry::connect(repository.clone(), auth, source, RetryPolicy::default())))
}

/// The commit an index (or image manifest) was built from: the index annotation our
/// builders write, else the first image's config label (buildx writes no index
/// annotations). `None` when neither says.
pub(crate) async fn revision_of(registry: &Registry, manifest: &[u8]) -> anyhow::Result<Option<String>> {
    annotation_of(registry, manifest, REVISION_KEY).await
}

/// `key` of an index's annotations, else of its first image's manifest annotations or
/// config labels.
async fn annotation_of(registry: &Registry, manifest: &[u8], key: &str) -> anyhow::Result<Option<String>> {
    let manifest = match Document::parse(manifest, "a published manifest")? {
        Document::Index(index) => {
            if let Some(text) = index.annotations().as_ref().and_then(|a| a.get(key)) {
                return Ok(Some(text.clone()));
            }
            let Some(entry) = index.manifests().iter().find(|d| !is_attestation(d)) else { return Ok(None) };
            let digest = entry.digest().to_string();
            let Some((bytes, _)) = registry.manifest(&digest).await? else { return Ok(None) };
            document::manifest(&bytes, &digest)?
        }
        Document::Image(manifest) => manifest,
    };
    if let Some(text) = manifest.annotations().as_ref().and_then(|a| a.get(key)) {
        return Ok(Some(text.clone()));
    }
    let descriptor = manifest.config();
    let config = registry.pull_blob_checked(descriptor.digest().as_ref(), descriptor.size()).await?;
    let config = document::config(&config, &format!("config {}", descriptor.digest()))?;
    Ok(config
        .config()
        .as_ref()
        .and_then(|config| config.labels().as_ref())
        .and_then(|labels| labels.get(key))
        .cloned())
}

/// Whether `registry` (`host[:port]`) is this machine: loopback registries (tests, local
/// mirrors) speak plain HTTP, as dockerd assumes. The host is parsed as an address,
/// never matched by prefix: `127.0.0.1.example.com` is a name anyone can point anywhere,
/// and gets TLS like any other.
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        // `[::1]:5000`, `127.0.0.1:5000`, `localhost:5000` (an IPv6 address takes brackets).
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `registry/name` without tag or digest, e.g. `ghcr.io/stigmer/agent-runner`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Repository {
    pub(crate) registry: String,
    pub(crate) name: String,
}

impl Repository {
    pub(crate) fn tag(&self, tag: &str) -> Reference {
        Reference::with_tag(self.registry.clone(), self.name.clone(), tag.to_owned())
    }

    pub(crate) fn digest(&self, digest: &str) -> Reference {
        Reference::with_digest(self.registry.clone(), self.name.clone(), digest.to_owned())
    }

    fn is_loopback(&self) -> bool {
        is_loopback(&self.registry)
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.name)
    }
}

impl FromStr for Repository {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Repository> {
        let reference: Reference =
            text.parse().with_context(|| format!("{text:?} is not an image repository"))?;
        if reference.digest().is_some() || text.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            bail!("{text:?} names a tag or digest; give the repository alone (e.g. ghcr.io/stigmer/agent-runner)");
        }
        Ok(Repository { registry: reference.registry().to_owned(), name: reference.repository().to_owned() })
    }
}

/// An image reference split into its repository and a tag or digest.
#[derive(Clone, Debug)]
pub(crate) struct ImageRef {
    pub(crate) repository: Repository,
    /// A tag, or a `sha256:` digest.
    pub(crate) target: String,
}

impl ImageRef {
    pub(crate) fn reference(&self) -> Reference {
        if self.target.starts_with("sha256:") {
            self.repository.digest(&self.target)
        } else {
            self.repository.tag(&self.target)
        }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let separator = if self.target.starts_with("sha256:") { '@' } else { ':' };
        write!(f, "{}{separator}{}", self.repository, self.target)
    }
}

impl FromStr for ImageRef {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<ImageRef> {
        let reference: Reference =
            text.parse().with_context(|| format!("{text:?} is not an image reference"))?;
        let repository =
            Repository { registry: reference.registry().to_owned(), name: reference.repository().to_owned() };
        let target = match (reference.digest(), reference.tag()) {
            (Some(digest), _) => digest.to_owned(),
            (None, Some(tag)) => tag.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        Ok(ImageRef { repository, target })
    }
}

/// How many tries a transient failure gets, and the first pause between them (it
/// triples each time, as go-containerregistry does).
#[derive(Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub(crate) tries: u32,
    pub(crate) first_pause: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { tries: 4, first_pause: Duration::from_millis(500) }
    }
}

pub(crate) struct Registry {
    client: Client,
    repository: Repository,
    /// Where the credentials came from (never the credentials themselves).
    credentials_source: String,
    retry: RetryPolicy,
    requests: AtomicU64,
    uploaded_bytes: AtomicU64,
}

impl Registry {
    pub(crate) async fn connect(
        repository: Repository,
        auth: RegistryAuth,
        credentials_source: String,
        retry: RetryPolicy,
    ) -> Registry {
        let protocol = if repository.is_loopback() {
            ClientProtocol::HttpsExcept(vec![repository.registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        // reqwest is built without a crypto provider (Cargo.toml: one TLS stack, no
        // aws-lc); the first connect installs ring's. Err only means one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(config);
        // Stored once; oci-client then authenticates each request (basic or token)
        // lazily, per operation.
        client.store_auth_if_needed(&repository.registry, &auth).await;
        Registry {
            client,
            repository,
            credentials_source,
            retry,
            requests: AtomicU64::new(0),
            uploaded_bytes: AtomicU64::new(0),
        }
    }

    pub(crate) fn repository(&self) -> &Repository {
        &self.repository
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes.load(Ordering::Relaxed)
    }

    /// Fails now, with the fix, when the credentials cannot push: better than after a
    /// ten-minute build. A read (a blob HEAD) proves nothing, since anonymous users may
    /// read a public package; so this asks to mount a blob into the repository, which
    /// needs push access like any upload. The registry answers 201 (mounted) or 202 (an
    /// upload session, which it expires unused); neither writes a blob or a tag.
    pub(crate) async fn check_push_access(&self) -> anyhow::Result<()> {
        let reference = self.repository.digest(EMPTY_JSON_DIGEST);
        self.requests.fetch_add(1, Ordering::Relaxed);
        match self.client.mount_blob(&reference, &reference, EMPTY_JSON_DIGEST).await {
            Ok(()) | Err(OciDistributionError::SpecViolationError(_)) => Ok(()),
            Err(err) if is_unauthorized(&err) => bail!(
                "{} refuses pushes with the credentials from {}: log in with \
                 `docker login {}`, set GITHUB_TOKEN for ghcr.io (with `packages: write`), or pass \
                 --username with --password-stdin",
                self.repository,
                self.credentials_source,
                self.repository.registry
            ),
            Err(err) => Err(describe(err, &self.repository, &self.credentials_source))
                .with_context(|| format!("checking push access to {}", self.repository)),
        }
    }

    pub(crate) async fn blob_exists(&self, digest: &str) -> anyhow::Result<bool> {
        let reference = self.repository.digest(digest);
        self.retrying(&format!("checking blob {digest}"), || self.client.blob_exists(&reference, digest))
            .await
    }

    /// Uploads a blob unless the registry has it already; returns the bytes sent.
    pub(crate) async fn push_blob_if_missing(&self, digest: &str, data: bytes::Bytes) -> anyhow::Result<u64> {
        if self.blob_exists(digest).await? {
            return Ok(0);
        }
        let reference = self.repository.digest(digest);
        self.retrying(&format!("uploading blob {digest}"), || {
            self.client.push_blob(&reference, data.clone(), digest)
        })
        .await?;
        let sent = data.len() as u64;
        self.uploaded_bytes.fetch_add(sent, Ordering::Relaxed);
        Ok(sent)
    }

    /// Downloads a blob and checks it against its descriptor's digest and size.
    pub(crate) async fn pull_blob_checked(&self, digest: &str, size: u64) -> anyhow::Result<Vec<u8>> {
        let reference = self.repository.digest(digest);
        let data = self
            .retrying(&format!("downloading blob {digest}"), || async {
                let mut data = Vec::with_capacity(size as usize);
                self.client
                    .pull_blob(
                        &reference,
                        &oci_client::manifest::OciDescriptor {
                            digest: digest.to_owned(),
                            size: size as i64,
                            ..Default::default()
                        },
                        &mut data,
                    )
                    .await
                    .map(|()| data)
            })
            .await?;
        if data.len() as u64 != size {
            bail!("blob {digest} has {} bytes, its descriptor says {size}", data.len());
        }
        let actual = sha256_digest(&data);
        if actual != digest {
            bail!("blob {digest} hashes to {actual}");
        }
        Ok(data)
    }

    /// The manifest or index a tag or digest names, as the exact bytes the registry
    /// holds, with the digest of those bytes (computed here). `None` when unknown.
    pub(crate) async fn manifest(
        &self,
        tag_or_digest: &str,
    ) -> anyhow::Result<Option<(bytes::Bytes, String)>> {
        let reference =
            ImageRef { repository: self.repository.clone(), target: tag_or_digest.to_owned() }.reference();
        let auth = RegistryAuth::Anonymous; // ignored: the stored credentials win
        let fetched = self
            .retrying_or_missing(&format!("fetching manifest {tag_or_digest}"), || {
                self.client.pull_manifest_raw(&reference, &auth, &ACCEPTED_MANIFESTS)
            })
            .await?;
        Ok(fetched.map(|(bytes, _header_digest)| {
            let digest = sha256_digest(&bytes);
            (bytes, digest)
        }))
    }

    /// Every tag of the repository (none for a repository nothing was pushed to), page
    /// by page as the distribution API lists them.
    pub(crate) async fn tags(&self) -> anyhow::Result<Vec<String>> {
        const PAGE: usize = 1000;
        let reference = self.repository.tag("latest");
        let auth = RegistryAuth::Anonymous; // ignored: the stored credentials win
        let mut tags: Vec<String> = Vec::new();
        loop {
            let last = tags.last().cloned();
            let page = self
                .retrying_or_missing("listing tags", || {
                    self.client.list_tags(&reference, &auth, Some(PAGE), last.as_deref())
                })
                .await?;
            let Some(page) = page else { return Ok(tags) };
            let full = page.tags.len() >= PAGE;
            tags.extend(page.tags);
            if !full {
                return Ok(tags);
            }
        }
    }

    /// Puts a manifest or index under its own digest, with no tag; returns the digest.
    pub(crate) async fn push_by_digest(
        &self,
        bytes: &bytes::Bytes,
        media_type: &str,
    ) -> anyhow::Result<String> {
        let digest = sha256_digest(bytes);
        self.put_manifest(&digest, bytes, media_type).await?;
        Ok(digest)
    }

    /// Points `tag` at `bytes`, unchanged. Only `tags.rs` calls this: every tag write
    /// goes through the rules there (a tidy test holds it).
    pub(crate) async fn put_tag(
        &self,
        tag: &str,
        bytes: &bytes::Bytes,
        media_type: &str,
    ) -> anyhow::Result<()> {
        self.put_manifest(tag, bytes, media_type).await
    }

    /// Puts `bytes` under a tag or digest, unchanged: the digest stays `sha256(bytes)`.
    async fn put_manifest(
        &self,
        tag_or_digest: &str,
        bytes: &bytes::Bytes,
        media_type: &str,
    ) -> anyhow::Result<()> {
        let reference =
            ImageRef { repository: self.repository.clone(), target: tag_or_digest.to_owned() }.reference();
        let content_type: http::HeaderValue =
            media_type.parse().context("a media type is a valid header value")?;
        self.retrying(&format!("pushing manifest {tag_or_digest}"), || {
            self.client.push_manifest_raw(&reference, bytes.clone(), content_type.clone())
        })
        .await?;
        Ok(())
    }

    async fn retrying<T, F, Fut>(&self, what: &str, call: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        match self.retrying_or_missing(what, call).await? {
            Some(value) => Ok(value),
            None => bail!("{what}: {} answered 404 not found", self.repository),
        }
    }

    /// Like `retrying`, with "not found" as `None` rather than an error.
    async fn retrying_or_missing<T, F, Fut>(&self, what: &str, mut call: F) -> anyhow::Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OciDistributionError>>,
    {
        let mut pause = self.retry.first_pause;
        for attempt in 1..=self.retry.tries {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let err = match call().await {
                Ok(value) => return Ok(Some(value)),
                Err(err) => err,
            };
            if is_not_found(&err) {
                return Ok(None);
            }
            let transient = is_transient(&err);
            if !transient || attempt == self.retry.tries {
                let hint =
                    if transient { format!(" (gave up after {attempt} tries)") } else { String::new() };
                return Err(describe(err, &self.repository, &self.credentials_source))
                    .with_context(|| format!("{what}{hint}"));
            }
            eprintln!(
                "    {what}: {}; retrying in {:.1} s",
                describe(err, &self.repository, &self.credentials_source),
                pause.as_secs_f64()
            );
            tokio::time::sleep(pause).await;
            pause *= 3;
        }
        unreachable!("the loop returns on its last try")
    }
}

fn is_unauthorized(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            true
        }
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RequestError(err) => {
            matches!(err.status().map(|s| s.as_u16()), Some(401 | 403))
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            use oci_client::errors::OciErrorCode::*;
            matches!(e.code, Unauthorized | Denied)
        }),
        _ => false,
    }
}

fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            use oci_client::errors::OciErrorCode::*;
            matches!(e.code, ManifestUnknown | BlobUnknown | NotFound | NameUnknown)
        }),
        _ => false,
    }
}

/// 5xx, 429 and connection-level failures: worth another try.
fn is_transient(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        // An untrusted certificate stays untrusted: asking again only delays the answer.
        OciDistributionError::RequestError(err) if is_certificate_error(err) => false,
        OciDistributionError::RequestError(err) => {
            err.is_connect() || err.is_timeout() || err.is_request() || err.is_body()
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, oci_client::errors::OciErrorCode::Toomanyrequests)),
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// A one-line account of a registry error, naming the fix where there is one.
fn describe(err: OciDistributionError, repository: &Repository, credentials_source: &str) -> anyhow::Error {
    match err {
        err if is_unauthorized(&err) => anyhow::anyhow!(
            "{repository} refused the credentials from {credentials_source} (401 unauthorized): log in \
             with `docker login {}`, set GITHUB_TOKEN for ghcr.io, or pass --username with --password-stdin",
            repository.registry
        ),
        OciDistributionError::RequestError(err) if is_certificate_error(&err) => anyhow::anyhow!(
            "{} presented a TLS certificate this machine does not trust: {} (a private CA's \
             certificate goes into the system's roots, or SSL_CERT_FILE names a file of them)",
            repository.registry,
            root_cause(&err)
        ),
        OciDistributionError::RequestError(err) if err.is_connect() => {
            anyhow::anyhow!("cannot connect to {}: {}", repository.registry, root_cause(&err))
        }
        other => anyhow::Error::new(other),
    }
}

/// Whether rustls refused the registry's certificate, somewhere in the error's chain.
/// hyper wraps it in `io::Error`s (nested), whose `source` skips what they wrap: so
/// each link is also opened with `get_ref`.
fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        let mut inner: &(dyn std::error::Error + 'static) = err;
        loop {
            if let Some(rustls::Error::InvalidCertificate(_)) = inner.downcast_ref::<rustls::Error>() {
                return true;
            }
            match inner.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
                Some(wrapped) => inner = wrapped,
                None => break,
            }
        }
        next = err.source();
    }
    false
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_split_into_registry_and_name() {
        let repo: Repository = "ghcr.io/stigmer/agent-runner".parse().unwrap();
        assert_eq!(repo.registry, "ghcr.io");
        assert_eq!(repo.name, "stigmer/agent-runner");
        let local: Repository = "127.0.0.1:5000/agent-runner".parse().unwrap();
        assert!(local.is_loopback());
        assert!(!repo.is_loopback());
        for loopback in ["127.1.2.3:80", "localhost:5000", "[::1]:5000", "localhost"] {
            assert!(is_loopback(loopback), "{loopback}");
        }
        // Found by reading: a prefix match sent credentials over plain HTTP to any
        // host whose name starts with `127.`.
        for remote in ["127.0.0.1.example.com:5000", "127.example.com", "10.0.0.1:5000", "ghcr.io"] {
            assert!(!is_loopback(remote), "{remote}");
        }
        assert!("ghcr.io/stigmer/agent-runner:v1.0.0".parse::<Repository>().is_err());
    }

    #[test]
    fn image_refs_keep_tag_or_digest() {
        let by_tag: ImageRef = "127.0.0.1:5000/agent-runner:v1.2.3".parse().unwrap();
        assert_eq!(by_tag.target, "v1.2.3");
        assert_eq!(by_tag.to_string(), "127.0.0.1:5000/agent-runner:v1.2.3");
        let digest = format!("sha256:{}", "a".repeat(64));
        let by_digest: ImageRef = format!("ghcr.io/stigmer/agent-runner@{digest}").parse().unwrap();
        assert_eq!(by_digest.target, digest);
    }
}
