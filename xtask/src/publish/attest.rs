//! The SBOM and provenance of an index that carries no BuildKit attestations (the
//! engine builder's, or a merge of its per-platform pushes), attached with cosign as
//! signed in-toto attestations beside the index (`sha256-<digest>.att`), so that both
//! layouts carry both. The SBOM is SPDX 2.3 of the image's Python packages
//! (requirements.lock in the build context) and the base image's Debian packages
//! (its `/var/lib/dpkg/status`, read with `docker create` + `docker cp`, never run); the
//! provenance is an SLSA v1 predicate of the plan's build.
//!
//! The documents are pure functions of their inputs (snapshot tests); this module
//! does not decide when to attest: `publish.rs` does, after signing.

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use crate::{
    build::engine::Engine,
    publish::{publish_plan::PublishPlan, sign},
};

/// Attaches the SBOM and the provenance to `REPO@index_digest`.
pub(crate) fn attach(
    sh: &Shell,
    plan: &PublishPlan,
    signer: &sign::Signer,
    index_digest: &str,
    docker_config: Option<&Path>,
) -> anyhow::Result<()> {
    let arg = |name: &str| plan.build_args.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
    let lock = std::fs::read_to_string(plan.context.join("requirements.lock")).unwrap_or_default();
    let engine = Engine::connect(sh)?;
    // The base as the build named it: the Dockerfile's pin, by digest, so the packages
    // listed are those of the index built from, never of whatever its tag names today.
    let base = plan.base_image.as_deref().context(
        "the SBOM lists the base image's packages, and this checkout pins no base: give --base-image",
    )?;
    let status = dpkg_status(sh, engine.program(), base)?;
    let version = plan.release.version.to_string();
    let created = arg("CREATED").unwrap_or_default();
    let sbom = spdx(&version, &created, &locked_packages(&lock), &dpkg_packages(&status));
    let platforms: Vec<String> = plan.platforms.iter().map(ToString::to_string).collect();
    let provenance = slsa_provenance(&Build {
        version: &version,
        revision: &arg("REVISION").unwrap_or_default(),
        base_image: base,
        platforms: &platforms,
        builder: &plan.builder_reason,
    });
    let dir = tempfile::tempdir()?;
    let reference = format!("{}@{index_digest}", plan.repository);
    for (kind, document, file) in
        [("spdxjson", sbom, "sbom.spdx.json"), ("slsaprovenance1", provenance, "provenance.json")]
    {
        let path = dir.path().join(file);
        std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
        sign::attest_image(sh, signer, &reference, kind, &path, docker_config)?;
    }
    eprintln!("==> attached an SPDX SBOM and an SLSA provenance to {reference} (cosign attestations)");
    Ok(())
}

/// The base image's dpkg status file, from a container that is created, never started.
fn dpkg_status(sh: &Shell, program: &str, base: &str) -> anyhow::Result<String> {
    let created = cmd!(sh, "{program} create {base}")
        .quiet()
        .read()
        .with_context(|| format!("reading the packages of {base}: creating a container (never started)"))?;
    let container = created.trim();
    let dir = tempfile::tempdir()?;
    let (from, to) = (format!("{container}:/var/lib/dpkg/status"), dir.path().join("status"));
    let copied = cmd!(sh, "{program} cp {from} {to}").quiet().run();
    cmd!(sh, "{program} rm {container}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("removing the container made to read the base image")?;
    // A base without dpkg (not Debian) has no Debian packages to list.
    Ok(match copied {
        Ok(()) => std::fs::read_to_string(&to)?,
        Err(_) => String::new(),
    })
}

/// `name==version` lines of a requirements.lock, in order.
fn locked_packages(lock: &str) -> Vec<(String, String)> {
    lock.lines()
        .filter(|line| !line.starts_with([' ', '#', '-']))
        .filter_map(|line| {
            let requirement = line.split([';', ' ']).next()?;
            let (name, version) = requirement.split_once("==")?;
            Some((name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// The installed packages of a dpkg status file, sorted by name.
fn dpkg_packages(status: &str) -> Vec<(String, String)> {
    let mut packages: Vec<(String, String)> = status
        .split("\n\n")
        .filter(|stanza| stanza.lines().any(|line| line == "Status: install ok installed"))
        .filter_map(|stanza| {
            let field = |key: &str| stanza.lines().find_map(|line| line.strip_prefix(key)).map(str::to_owned);
            Some((field("Package: ")?, field("Version: ")?))
        })
        .collect();
    packages.sort();
    packages
}

/// SPDX 2.3 of the image: its Python packages (PyPI purls) and the base's Debian ones.
fn spdx(version: &str, created: &str, python: &[(String, String)], debian: &[(String, String)]) -> Value {
    let spdx_id = |prefix: &str, name: &str| {
        let clean: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
        format!("SPDXRef-{prefix}-{clean}")
    };
    let package = |prefix: &str, purl: String, name: &str, version: &str| {
        json!({
            "SPDXID": spdx_id(prefix, name),
            "name": name,
            "versionInfo": version,
            "downloadLocation": "NOASSERTION",
            "externalRefs": [{ "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl }],
        })
    };
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-agent-runner",
        "name": "stigmer-agent-runner",
        "versionInfo": version,
        "downloadLocation": "https://github.com/stigmer/stigmer",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-agent-runner",
    })];
    for (name, v) in python {
        packages.push(package("pypi", format!("pkg:pypi/{}@{v}", name.to_lowercase()), name, v));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-agent-runner", "relationshipType": "CONTAINS", "relatedSpdxElement": spdx_id("pypi", name),
        }));
    }
    for (name, v) in debian {
        packages.push(package("deb", format!("pkg:deb/debian/{name}@{v}"), name, v));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-agent-runner", "relationshipType": "CONTAINS", "relatedSpdxElement": spdx_id("deb", name),
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("stigmer-agent-runner-{version}"),
        "documentNamespace": format!("https://github.com/stigmer/stigmer/spdx/agent-runner-{version}"),
        "creationInfo": { "created": created, "creators": ["Tool: cargo-xtask-image"] },
        "packages": packages,
        "relationships": relationships,
    })
}

/// What the provenance says was built, and how.
struct Build<'a> {
    version: &'a str,
    revision: &'a str,
    base_image: &'a str,
    platforms: &'a [String],
    builder: &'a str,
}

/// An SLSA v1 provenance predicate of an engine build.
fn slsa_provenance(build: &Build<'_>) -> Value {
    json!({
        "buildDefinition": {
            "buildType": "https://github.com/stigmer/stigmer/xtask/image-engine@v1",
            "externalParameters": {
                "version": build.version,
                "platforms": build.platforms,
                "baseImage": build.base_image,
            },
            "internalParameters": { "builder": build.builder },
            "resolvedDependencies": [{
                "uri": "git+https://github.com/stigmer/stigmer",
                "digest": { "gitCommit": build.revision },
            }],
        },
        "runDetails": {
            "builder": { "id": "https://github.com/stigmer/stigmer/xtask/image-engine" },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sbom_lists_the_locked_python_and_the_installed_debian_packages() {
        let lock = "# generated\nanyio==4.16.0 \\\n    --hash=sha256:ab\n    # via starlette\n\
                    typing-extensions==4.16.0 ; python_full_version < '3.15' \\\n    --hash=sha256:cd\n";
        let status = "Package: python3.11\nStatus: install ok installed\nVersion: 3.11.2-6\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
                      Package: base-files\nStatus: install ok installed\nVersion: 12.4\n";
        let python = locked_packages(lock);
        assert_eq!(
            python,
            [("anyio".into(), "4.16.0".into()), ("typing-extensions".into(), "4.16.0".into())]
        );
        let sbom = spdx("1.3.0", "2026-11-23T00:00:00Z", &python, &dpkg_packages(status));
        insta::assert_snapshot!(serde_json::to_string_pretty(&sbom).unwrap());
    }

    #[test]
    fn the_provenance_names_the_revision_base_and_platforms() {
        let platforms = ["linux/amd64".to_owned(), "linux/arm64".to_owned()];
        let provenance = slsa_provenance(&Build {
            version: "1.3.0",
            revision: "0123456789abcdef0123456789abcdef01234567",
            base_image:
                "python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff",
            platforms: &platforms,
            builder: "--builder engine",
        });
        insta::assert_snapshot!(serde_json::to_string_pretty(&provenance).unwrap());
    }
}
