//! Command-line flags of `stigmer`: the clap types and their parsers, nothing else.
//! xtask compiles this file too (`xtask/src/dist/cli_docs.rs`: completions and man pages), so
//! it may use only clap, std and `super::build_info`'s `version` and `long_version`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "Exit codes:
  0  success (for `server status`: running and healthy)
  1  an error, explained on stderr
  2  bad command-line usage
  3  no container engine answers (Docker or Podman)
  4  the agent-runner is not healthy: it failed to start, or `server status` found it stopped, missing or unhealthy";

/// Run Stigmer's agent-runner on this machine.
///
/// The agent-runner runs in a container (Docker or Podman). `stigmer server start`
/// finds the image (a released stigmer: the one published with it, pinned by digest; a
/// developer's build: `cargo xtask image --local`'s first), starts it and waits until it
/// is healthy. A released stigmer says when a newer release is out, asking at most once
/// a day; STIGMER_NO_UPDATE_CHECK=1 (or CI set) turns that off.
#[derive(Parser)]
#[command(
    name = "stigmer",
    version = super::build_info::version(),
    long_version = super::build_info::long_version(),
    after_help = EXIT_CODES
)]
pub(crate) struct Stigmer {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Start, stop and inspect the agent-runner container
    #[command(subcommand, after_help = EXIT_CODES)]
    Server(Server),
}

#[derive(Subcommand)]
pub(crate) enum Server {
    Start(Start),
    Stop(Stop),
    Status(Status),
    Logs(Logs),
}

/// Start the agent-runner and wait until it is healthy (does nothing if it already is).
///
/// Image: --image or STIGMER_AGENT_RUNNER_IMAGE; else, for a released stigmer, the
/// agent-runner it was released with, by digest (`stigmer --version` names it); else
/// `stigmer-agent-runner:local` when `cargo xtask image --local` built it; else
/// `ghcr.io/stigmer/agent-runner:v<this version>` (STIGMER_REGISTRY changes the
/// registry), pulled when missing. When the agent-runner already runs another image
/// (after an upgrade), start and status say so. Passes STIGMER_LLM_PROVIDER,
/// STIGMER_LLM_MODEL, STIGMER_SERVER_ADDR, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
/// STIGMER_LOG_LEVEL and STIGMER_MAX_UPLOAD_BYTES when set; OPENAI_API_KEY,
/// ANTHROPIC_API_KEY and GEMINI_API_KEY go in as read-only files, never as
/// environment. Mounts STIGMER_HOME/workspace (default ~/.stigmer/workspace) at
/// /workspace.
#[derive(Args)]
pub(crate) struct Start {
    /// The image to run instead of the default choice
    #[arg(long, value_name = "REF", env = "STIGMER_AGENT_RUNNER_IMAGE", hide_env_values = true)]
    pub(crate) image: Option<String>,

    /// The port the agent-runner serves on (host networking on Linux, published on
    /// 127.0.0.1 elsewhere)
    #[arg(
        long,
        value_name = "PORT",
        env = "STIGMER_AGENT_RUNNER_PORT",
        hide_env_values = true,
        default_value_t = 7235
    )]
    pub(crate) port: u16,

    /// How long to wait for it to become healthy (e.g. 90s, 2m)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

/// Stop and remove the agent-runner container, and any orphans of earlier runs.
#[derive(Args)]
pub(crate) struct Stop {
    /// How long it gets to stop gracefully before it is killed
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

/// Show whether the agent-runner runs, its image, version, uptime and health.
#[derive(Args)]
pub(crate) struct Status {
    /// Print JSON for scripts
    #[arg(long)]
    pub(crate) json: bool,
}

/// Show the agent-runner's logs: its stdout on stdout, its stderr on stderr.
#[derive(Args)]
pub(crate) struct Logs {
    /// Whose logs
    #[arg(long, value_enum, default_value_t = Component::AgentRunner)]
    pub(crate) component: Component,

    /// Keep printing new lines until Ctrl-C
    #[arg(short, long)]
    pub(crate) follow: bool,

    /// Only the last N lines (or `all`)
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<String>,

    /// Only lines since a time (2026-01-22T10:00:00Z), Unix seconds, or a duration ago (10m)
    #[arg(long, value_name = "T")]
    pub(crate) since: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Component {
    AgentRunner,
}

/// `500ms`, `90s`, `10m`, `2h`, or a bare number of seconds. (Ours, not `humantime`:
/// that crate is not in the lock file, and these four units are all the flags take.)
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 90s or 10m"))?;
    let seconds = |per_unit: u64| {
        number.checked_mul(per_unit).map(Duration::from_secs).ok_or_else(|| format!("{text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("{text:?} is not a duration like 90s or 10m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_four_units_or_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "m", "1.5s", "10 m", "-1s", "3d", "1h30m"] {
            assert!(parse_duration(bad).unwrap_err().contains("is not a duration"), "{bad:?}");
        }
    }

    /// Regression: `number * 3600` overflowed (a panic in a debug build, a wrong value
    /// in a release build).
    #[test]
    fn a_duration_too_long_for_u64_seconds_is_an_error() {
        assert_eq!(
            parse_duration("18446744073709551615h"),
            Err("\"18446744073709551615h\" is too long".to_owned())
        );
        assert!(parse_duration("18446744073709551615s").is_ok());
    }
}
