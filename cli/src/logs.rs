//! `stigmer server logs`: the container's output, stdout to stdout and stderr to
//! stderr (no TTY, so the engine keeps them apart), from the last N lines or a time,
//! optionally following until Ctrl-C, which ends it cleanly. The container is the one
//! `server::find` names (name and labels), never merely one with our name.

use std::io::Write;

use anyhow::{bail, Context};
use bollard::{container::LogOutput, query_parameters::LogsOptionsBuilder};
use futures_util::StreamExt;

use crate::{
    engine::Engine,
    home::Home,
    server::{container_name, find},
};

pub(crate) struct LogsRequest {
    pub(crate) follow: bool,
    pub(crate) tail: Option<String>,
    pub(crate) since: Option<String>,
}

pub(crate) async fn logs(engine: &Engine, home: &Home, request: LogsRequest) -> anyhow::Result<()> {
    let name = container_name();
    let Some(container) = find(engine, home, &name).await? else {
        bail!("there is no agent-runner container ({name}): start it with `stigmer server start`");
    };
    let id = container.id.unwrap_or_default();
    let since = match &request.since {
        Some(text) => parse_since(text, chrono::Utc::now())?,
        None => 0,
    };
    let tail = request.tail.clone().unwrap_or_else(|| "all".to_owned());
    if tail != "all" && tail.parse::<u64>().is_err() {
        bail!("--tail takes a number of lines or `all`, not {tail:?}");
    }
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .follow(request.follow)
        .tail(&tail)
        .since(since)
        .build();
    let mut stream = engine.docker.logs(&id, Some(options));
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            _ = &mut ctrl_c => return Ok(()),
        };
        let Some(frame) = frame else { return Ok(()) };
        let written = match frame.context("reading the container's logs")? {
            LogOutput::StdErr { message } => stderr.write_all(&message).and_then(|()| stderr.flush()),
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                stdout.write_all(&message).and_then(|()| stdout.flush())
            }
            LogOutput::StdIn { .. } => Ok(()),
        };
        match written {
            // A closed pipe (`stigmer server logs | head`) is the reader's choice.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other?,
        }
    }
}

/// `--since`: an RFC 3339 time, Unix seconds, or a duration ago (`90s`, `10m`, `2h`), as
/// the Unix seconds the engine takes. bollard 0.21's `LogsOptions::since` is an `i32`
/// (the engine's API itself takes any number), so a time after 2038-01-19T03:14:07Z
/// cannot be sent: it is refused here, where `as i32` used to wrap it into 1901 and so
/// show every line. A time before 1970 is 0, which asks for every line: all of them are
/// newer.
fn parse_since(text: &str, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<i32> {
    let seconds = if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        time.timestamp()
    } else if let Ok(seconds) = text.parse::<i64>() {
        seconds
    } else {
        let ago = crate::flags::parse_duration(text).map_err(|_| {
            anyhow::anyhow!(
                "--since takes a time (2026-01-22T10:00:00Z), Unix seconds or a duration (10m), not {text:?}"
            )
        })?;
        now.timestamp().saturating_sub(i64::try_from(ago.as_secs()).unwrap_or(i64::MAX))
    };
    i32::try_from(seconds.max(0)).map_err(|_| {
        anyhow::anyhow!(
            "--since {text:?} is after 2038-01-19T03:14:07Z, the latest time the engine client \
             (bollard) can send; a time in the future shows no lines anyway"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_seconds_and_durations() {
        let now = now();
        assert_eq!(parse_since("2026-11-23T11:00:00Z", now).unwrap() as i64, now.timestamp() - 3600);
        assert_eq!(parse_since("2026-11-23T13:00:00+02:00", now).unwrap() as i64, now.timestamp() - 3600);
        assert_eq!(parse_since("1700000000", now).unwrap(), 1_700_000_000);
        assert_eq!(parse_since("10m", now).unwrap() as i64, now.timestamp() - 600);
        assert_eq!(parse_since("2038-01-19T03:14:07Z", now).unwrap(), i32::MAX);
        let err = parse_since("yesterday", now).unwrap_err().to_string();
        assert!(err.contains("--since takes a time"), "{err}");
    }

    /// Regression: `since as i32` wrapped a time after 2038 into 1901, which showed
    /// every line instead of none.
    #[test]
    fn a_since_after_2038_is_refused_not_wrapped() {
        for text in ["2038-01-19T03:14:08Z", "2100-01-01T00:00:00Z", "4102444800", "99999999999999"] {
            let err = parse_since(text, now()).unwrap_err().to_string();
            assert!(err.contains("is after 2038-01-19T03:14:07Z"), "{text}: {err}");
        }
    }

    #[test]
    fn a_since_before_1970_asks_for_every_line() {
        let now = now();
        assert_eq!(parse_since("1960-01-01T00:00:00Z", now).unwrap(), 0);
        assert_eq!(parse_since("-5", now).unwrap(), 0);
        // 100 000 years ago: no overflow, every line.
        assert_eq!(parse_since("876000000h", now).unwrap(), 0);
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").unwrap().with_timezone(&chrono::Utc)
    }
}
