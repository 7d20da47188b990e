//! Every write of a tag to the registry; no other module writes one (a tidy test holds
//! it: only this module calls `Registry::put_tag`). Builders push content by digest
//! only, so nothing is public under a name until the publish pipeline has verified and
//! signed it and calls here.
//!
//! Architecture invariant: a published version tag never changes. `write_version` puts
//! `vX.Y.Z` on an index once, refuses when it names another digest, and reads it back
//! to catch a concurrent writer.
//!
//! Architecture invariant: a floating pointer never moves backwards. `move_pointers`
//! moves `latest`, `vX.Y` and `vX` only where the plan allows and `Pointer::decide` still
//! says so over what the registry holds at that moment.

use anyhow::{bail, Context};

use crate::{
    plan,
    pointer::{Current, Pointer},
    publish::{publish_plan::PublishPlan, verify},
    registry::{
        document::Document,
        oci::{self, Registry},
    },
};

/// Puts `vX.Y.Z` on the index `index_digest` (pushed by digest, verified and signed by
/// the caller), unless it names another digest: a published version never changes.
pub(crate) async fn write_version(
    plan: &PublishPlan,
    registry: &Registry,
    index_digest: &str,
) -> anyhow::Result<()> {
    let tag = plan.version_tag();
    match registry.manifest(&tag).await? {
        Some((_, published)) if published == index_digest => {
            eprintln!("==> {}:{tag} names {index_digest} already", plan.repository);
            return Ok(());
        }
        Some((_, published)) => bail!(write_once_refusal(plan, &published, index_digest)),
        None => {}
    }
    let (bytes, media_type) = exact_bytes(registry, index_digest).await?;
    registry.put_tag(&tag, &bytes, &media_type).await.with_context(|| format!("tagging {tag}"))?;
    // The registry has no compare-and-swap: a second writer between the read above and
    // this write wins silently, unless it is caught here.
    match registry.manifest(&tag).await? {
        Some((_, now)) if now == index_digest => {}
        now => bail!(
            "{}:{tag} was written by another publish at the same time: it names {}, not this run's \
             {index_digest}. No pointer was moved. Compare the two builds (`cargo xtask verify-image`); \
             a published version never changes, so if they differ, cut the next patch",
            plan.repository,
            now.map_or("nothing".to_owned(), |(_, digest)| digest)
        ),
    }
    eprintln!("==> tagged {}:{tag} -> {index_digest}", plan.repository);
    Ok(())
}

/// The refusal of a second digest for a published version, with the way out.
pub(crate) fn write_once_refusal(plan: &PublishPlan, published: &str, new: &str) -> String {
    let next = next_patch(plan);
    format!(
        "{}:{} is published as {published}, and this build is {new}: a published version never \
         changes. Nothing was tagged. Cut the next patch instead (`cargo xtask release --bump patch`, v{next})",
        plan.repository,
        plan.version_tag()
    )
}

/// The version to cut when this plan's version cannot be published.
pub(crate) fn next_patch(plan: &PublishPlan) -> semver::Version {
    let version = &plan.release.version;
    semver::Version::new(version.major, version.minor, version.patch + 1)
}

/// The index's bytes as the registry holds them, and its media type: what a tag names
/// is always these exact bytes, never a re-serialized index.
async fn exact_bytes(registry: &Registry, digest: &str) -> anyhow::Result<(bytes::Bytes, String)> {
    let (bytes, _) =
        registry.manifest(digest).await?.with_context(|| format!("the index {digest} vanished"))?;
    let media_type = match Document::parse(&bytes, digest)?.media_type() {
        declared if declared.is_empty() => oci::OCI_INDEX.to_owned(),
        declared => declared,
    };
    Ok((bytes, media_type))
}

/// Points each floating tag the plan lets move at the index, when `Pointer::decide` still
/// says so over what the registry holds at this moment: a plan that went stale never
/// moves one backwards. Returns the tags that name the index now.
pub(crate) async fn move_pointers(
    sh: &xshell::Shell,
    plan: &PublishPlan,
    registry: &Registry,
    index_digest: &str,
) -> anyhow::Result<Vec<String>> {
    let (index_bytes, media_type) = exact_bytes(registry, index_digest).await?;
    let version = &plan.release.version;
    let mut moved = Vec::new();
    let released = plan::released_images(sh, registry).await?;
    let mut published = plan.release.released.clone();
    published.extend(released.iter().map(|release| release.version.clone()));
    for pointer in Pointer::of(version) {
        let tag = pointer.tag();
        let planned = plan.release.image.pointers.iter().find(|p| p.tag == tag).map(|p| &p.decision);
        let Some(planned) = planned.filter(|decision| decision.moves) else {
            let reason = planned.map_or("not in the plan", |decision| decision.reason.as_str());
            eprintln!("  {tag:<8} stays ({reason})");
            continue;
        };
        let current = match registry.manifest(&tag).await? {
            None => Current::Absent,
            Some((_, at)) if at == index_digest => Current::Version(version.clone()),
            Some((_, at)) => plan::naming(&released, &at),
        };
        let now = pointer.decide(version, &published, &current);
        if !now.moves {
            eprintln!("  {tag:<8} stays ({}; the plan said: {})", now.reason, planned.reason);
            continue;
        }
        if current != Current::Version(version.clone()) {
            registry
                .put_tag(&tag, &index_bytes, &media_type)
                .await
                .with_context(|| format!("pointing {tag} at {index_digest}"))?;
        }
        eprintln!("  {tag:<8} -> {} ({})", plan.version_tag(), now.reason);
        moved.push(tag);
    }
    let misplaced = verify::tags_elsewhere(registry, &moved, index_digest).await?;
    if !misplaced.is_empty() {
        bail!("after moving the pointers: {}", misplaced.join("; "));
    }
    Ok(moved)
}
