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
        .since(since as i32)
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

/// `--since`: an RFC 3339 time, Unix seconds, or a duration ago (`90s`, `10m`, `2h`).
fn parse_since(text: &str, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<i64> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp());
    }
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    let ago = crate::flags::parse_duration(text).map_err(|_| {
        anyhow::anyhow!(
            "--since takes a time (2026-01-22T10:00:00Z), Unix seconds or a duration (10m), not {text:?}"
        )
    })?;
    Ok(now.timestamp() - ago.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_seconds_and_durations() {
        let now =
            chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_since("2026-11-23T11:00:00Z", now).unwrap(), now.timestamp() - 3600);
        assert_eq!(parse_since("1700000000", now).unwrap(), 1_700_000_000);
        assert_eq!(parse_since("10m", now).unwrap(), now.timestamp() - 600);
        assert!(parse_since("yesterday", now).is_err());
    }
}
