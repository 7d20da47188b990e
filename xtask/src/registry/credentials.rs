//! Registry credentials, looked for in the order a CI user expects: `--username` with
//! `--password-stdin`; `GITHUB_TOKEN` (user `GITHUB_ACTOR`), for ghcr.io only, so a
//! GitHub token never goes to another registry; the Docker config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`: `auths`, then
//! `credHelpers` and `credsStore` through `docker-credential-*`); else anonymous.
//!
//! Secrets never reach output or errors: only where they came from is reported.

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use xshell::{cmd, Shell};

pub(crate) struct ExplicitLogin {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// Whether credentials that `resolve` found are ones the Docker config holds, so that
/// the docker CLI and buildx have them too.
pub(crate) fn in_docker_config(source: &str) -> bool {
    source.starts_with(DOCKER_CONFIG_SOURCE)
}

const DOCKER_CONFIG_SOURCE: &str = "docker config";

/// The credentials for `registry`, and a description of where they came from.
pub(crate) fn resolve(
    sh: &Shell,
    registry: &str,
    explicit: Option<ExplicitLogin>,
) -> anyhow::Result<(RegistryAuth, String)> {
    if let Some(login) = explicit {
        return Ok((
            RegistryAuth::Basic(login.username, login.password),
            "--username/--password-stdin".into(),
        ));
    }
    if registry == "ghcr.io" {
        if let (Ok(token), Ok(actor)) = (sh.var("GITHUB_TOKEN"), sh.var("GITHUB_ACTOR")) {
            if !token.is_empty() {
                return Ok((RegistryAuth::Basic(actor, token), "GITHUB_TOKEN".into()));
            }
        }
    }
    let path = docker_config_path(sh);
    if let Some(auth) = from_docker_config(sh, &path, registry)? {
        return Ok((auth, format!("{DOCKER_CONFIG_SOURCE} ({})", path.display())));
    }
    Ok((RegistryAuth::Anonymous, "anonymous".into()))
}

fn docker_config_path(sh: &Shell) -> PathBuf {
    match sh.var("DOCKER_CONFIG") {
        Ok(dir) => PathBuf::from(dir).join("config.json"),
        Err(_) => PathBuf::from(sh.var("HOME").unwrap_or_default()).join(".docker/config.json"),
    }
}

fn from_docker_config(sh: &Shell, path: &PathBuf, registry: &str) -> anyhow::Result<Option<RegistryAuth>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    // Docker Hub is keyed by its legacy URL in every config Docker writes.
    let keys = match registry {
        "docker.io" | "index.docker.io" => {
            vec!["https://index.docker.io/v1/", "docker.io", "index.docker.io"]
        }
        _ => vec![registry],
    };
    for key in &keys {
        if let Some(helper) = config["credHelpers"][*key].as_str() {
            return credential_helper(sh, helper, key).map(Some);
        }
    }
    for key in &keys {
        let entry = &config["auths"][*key];
        if let Some(encoded) = entry["auth"].as_str().filter(|auth| !auth.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .with_context(|| {
                    format!("the `auth` of {key} in {} is not base64 `user:password`", path.display())
                })?;
            let Some((user, password)) = decoded.split_once(':') else {
                bail!("the `auth` of {key} in {} is not `user:password`", path.display());
            };
            return Ok(Some(RegistryAuth::Basic(user.to_owned(), password.to_owned())));
        }
        if let Some(token) = entry["identitytoken"].as_str() {
            return Ok(Some(RegistryAuth::Bearer(token.to_owned())));
        }
    }
    if let Some(store) = config["credsStore"].as_str() {
        // A store that does not know the registry answers non-zero: anonymous then.
        return Ok(credential_helper(sh, store, keys[0]).ok());
    }
    Ok(None)
}

/// Asks `docker-credential-<helper> get` for `server`'s credentials.
fn credential_helper(sh: &Shell, helper: &str, server: &str) -> anyhow::Result<RegistryAuth> {
    let program = format!("docker-credential-{helper}");
    let output = cmd!(sh, "{program} get")
        .stdin(server)
        .quiet()
        .ignore_stderr()
        .secret()
        .read()
        .with_context(|| format!("asking the credential helper `{program}` for {server}"))?;
    let reply: serde_json::Value =
        serde_json::from_str(&output).with_context(|| format!("`{program} get` did not answer JSON"))?;
    let (user, secret) = (reply["Username"].as_str().unwrap_or(""), reply["Secret"].as_str().unwrap_or(""));
    Ok(match user {
        // Docker's convention for an identity token.
        "<token>" => RegistryAuth::Bearer(secret.to_owned()),
        _ => RegistryAuth::Basic(user.to_owned(), secret.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_kind(auth: &RegistryAuth) -> String {
        match auth {
            RegistryAuth::Anonymous => "anonymous".into(),
            RegistryAuth::Basic(user, _) => format!("basic {user}"),
            RegistryAuth::Bearer(_) => "bearer".into(),
        }
    }

    #[test]
    fn docker_config_auths_are_decoded_and_other_registries_stay_anonymous() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let config = format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{encoded}"}}}}}}"#);
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        let _env = sh.push_env("DOCKER_CONFIG", dir.path());
        let _no_token = sh.push_env("GITHUB_TOKEN", "");
        let (auth, source) = resolve(&sh, "127.0.0.1:5000", None).unwrap();
        assert_eq!(auth_kind(&auth), "basic alice");
        assert!(source.starts_with("docker config"), "{source}");
        let (auth, _) = resolve(&sh, "127.0.0.1:6000", None).unwrap();
        assert_eq!(auth_kind(&auth), "anonymous");
    }

    #[test]
    fn a_github_token_goes_to_ghcr_only() {
        let sh = Shell::new().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let _config = sh.push_env("DOCKER_CONFIG", empty.path());
        let _token = sh.push_env("GITHUB_TOKEN", "ghp_example");
        let _actor = sh.push_env("GITHUB_ACTOR", "octocat");
        assert_eq!(auth_kind(&resolve(&sh, "ghcr.io", None).unwrap().0), "basic octocat");
        assert_eq!(auth_kind(&resolve(&sh, "registry.example.com", None).unwrap().0), "anonymous");
    }
}
