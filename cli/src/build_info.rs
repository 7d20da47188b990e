//! What this binary was built from, stamped in by `cargo xtask dist` through environment
//! variables read at compile time. A plain `cargo build` has none of them and says so,
//! rather than guessing a revision or a date.

/// The version users see: `X.Y.Z`, or `X.Y.(Z+1)-snapshot-<sha>` for a snapshot build.
/// It also names the image tag the CLI pulls when it has no pinned digest.
pub(crate) const VERSION: &str = match option_env!("STIGMER_BUILD_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};
const REVISION: Option<&str> = option_env!("STIGMER_BUILD_REVISION");
const DATE: Option<&str> = option_env!("STIGMER_BUILD_DATE");

/// The agent-runner index digest published with this version, when the build knew it:
/// the CLI then pulls the image by digest, so a moved tag cannot change what runs.
/// `cargo xtask dist` leaves the variable unset when it has no digest.
pub(crate) const IMAGE_DIGEST: Option<&str> = option_env!("STIGMER_IMAGE_DIGEST");

/// Where released agent-runner images live (`STIGMER_REGISTRY` overrides it at run time).
pub(crate) const DEFAULT_REGISTRY: &str = "ghcr.io/stigmer";

/// `stigmer --version`: the version, revision, build date and the image this CLI runs.
pub(crate) fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let repository = format!("{DEFAULT_REGISTRY}/agent-runner");
        let image = match IMAGE_DIGEST {
            Some(digest) => format!("{repository}@{digest} (v{VERSION}, pinned)"),
            None => format!("{repository}:v{VERSION}"),
        };
        format!(
            "{VERSION}\nrevision:      {}\nbuilt:         {}\nagent-runner:  {image}",
            REVISION.unwrap_or("unknown (not built by `cargo xtask dist`)"),
            DATE.unwrap_or("unknown"),
        )
    })
}
