//! How an image pull shows itself: a line per layer, as `docker pull` shows it. On a
//! terminal each layer's line is redrawn in place (`Waiting`, `Downloading` with a bar
//! and bytes, `Pull complete`); anywhere else (a CI log, a pipe) a plain line is printed
//! when a layer's state changes, never per byte. It only renders the engine's messages:
//! the pull itself, and deciding whether it worked, is `image`'s.

use std::{collections::HashMap, io::IsTerminal};

use bollard::models::CreateImageInfo;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};

pub(crate) enum PullProgress {
    Bars(Bars),
    Lines(Lines),
}

impl PullProgress {
    /// Bars when stderr is a terminal, plain lines otherwise.
    pub(crate) fn for_stderr() -> PullProgress {
        if std::io::stderr().is_terminal() {
            PullProgress::Bars(Bars::default())
        } else {
            PullProgress::Lines(Lines::default())
        }
    }

    /// Shows one message of the engine's pull stream.
    pub(crate) fn show(&mut self, info: &CreateImageInfo) {
        let Some(status) = info.status.as_deref() else { return };
        let detail = info.progress_detail.as_ref();
        let total = detail.and_then(|d| d.total).and_then(|t| u64::try_from(t).ok()).filter(|t| *t > 0);
        let current = detail.and_then(|d| d.current).and_then(|c| u64::try_from(c).ok()).unwrap_or(0);
        match self {
            PullProgress::Bars(bars) => bars.show(info.id.as_deref(), status, current, total),
            PullProgress::Lines(lines) => {
                if let Some(line) = lines.line(info.id.as_deref(), status, total) {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// Leaves every layer's last state on screen.
    pub(crate) fn finish(self) {
        if let PullProgress::Bars(bars) = self {
            for (bar, _) in bars.layers.values() {
                bar.finish();
            }
        }
    }
}

/// One bar per layer (and one for the `Pulling from` line, whose id is the tag), in the
/// order the engine first names them.
#[derive(Default)]
pub(crate) struct Bars {
    multi: MultiProgress,
    /// Each layer's bar, and whether it shows bytes now (its style).
    layers: HashMap<String, (ProgressBar, bool)>,
}

impl Bars {
    fn show(&mut self, id: Option<&str>, status: &str, current: u64, total: Option<u64>) {
        let Some(id) = id else {
            // A message of the whole pull: `Digest: ...`, `Status: ...`.
            let _ = self.multi.println(status);
            return;
        };
        let (bar, shows_bytes) = self.layers.entry(id.to_owned()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0).with_prefix(id.to_owned()));
            bar.set_style(style(false));
            (bar, false)
        });
        // The message first: a redraw may come between any two of these calls, and the
        // old state's words beside the new state's bar would be wrong.
        bar.set_message(status.to_owned());
        if total.is_some() != *shows_bytes {
            *shows_bytes = total.is_some();
            bar.set_style(style(*shows_bytes));
        }
        if let Some(total) = total {
            bar.set_length(total);
            bar.set_position(current.min(total));
        }
    }
}

fn style(with_bytes: bool) -> ProgressStyle {
    let template =
        if with_bytes { "{prefix}: {msg:<11} [{bar:30}] {bytes}/{total_bytes}" } else { "{prefix}: {msg}" };
    ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ")
}

/// The plain form: each layer's last state, so that only a change prints.
#[derive(Default)]
pub(crate) struct Lines {
    states: HashMap<String, String>,
}

impl Lines {
    /// The line for this message, or `None` when it only moves a layer's byte count.
    fn line(&mut self, id: Option<&str>, status: &str, total: Option<u64>) -> Option<String> {
        let Some(id) = id else { return Some(status.to_owned()) };
        if self.states.get(id).is_some_and(|last| last == status) {
            return None;
        }
        self.states.insert(id.to_owned(), status.to_owned());
        Some(match total {
            Some(total) => format!("{id}: {status} ({})", HumanBytes(total)),
            None => format!("{id}: {status}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What dockerd 20.10 sends for a pull of one new layer over two known ones,
    /// shortened (the real stream has a `Downloading` and an `Extracting` message for
    /// every few hundred KiB).
    #[test]
    fn plain_lines_say_each_state_change_once_and_never_the_byte_count() {
        let layer = "0a1b2c3d4e5f";
        let mut messages: Vec<(Option<&str>, &str, Option<u64>)> = vec![
            (Some("v0.1.0"), "Pulling from stigmer/agent-runner", None),
            (Some("9f8e7d6c5b4a"), "Already exists", None),
            (Some("8e7d6c5b4a39"), "Already exists", None),
            (Some(layer), "Pulling fs layer", None),
            (Some(layer), "Waiting", None),
        ];
        messages.extend((1..=20).map(|_| (Some(layer), "Downloading", Some(8_388_608))));
        messages
            .extend([(Some(layer), "Verifying Checksum", None), (Some(layer), "Download complete", None)]);
        messages.extend((1..=20).map(|_| (Some(layer), "Extracting", Some(8_388_608))));
        messages.extend([
            (Some(layer), "Pull complete", None),
            (None, "Digest: sha256:4c3a0e4c1b1f8c6a", None),
            (None, "Status: Downloaded newer image for 127.0.0.1:5000/stigmer/agent-runner:v0.1.0", None),
        ]);
        let mut lines = Lines::default();
        let shown: Vec<String> =
            messages.into_iter().filter_map(|(id, status, total)| lines.line(id, status, total)).collect();
        assert_eq!(
            shown,
            [
                "v0.1.0: Pulling from stigmer/agent-runner",
                "9f8e7d6c5b4a: Already exists",
                "8e7d6c5b4a39: Already exists",
                "0a1b2c3d4e5f: Pulling fs layer",
                "0a1b2c3d4e5f: Waiting",
                "0a1b2c3d4e5f: Downloading (8.00 MiB)",
                "0a1b2c3d4e5f: Verifying Checksum",
                "0a1b2c3d4e5f: Download complete",
                "0a1b2c3d4e5f: Extracting (8.00 MiB)",
                "0a1b2c3d4e5f: Pull complete",
                "Digest: sha256:4c3a0e4c1b1f8c6a",
                "Status: Downloaded newer image for 127.0.0.1:5000/stigmer/agent-runner:v0.1.0",
            ]
        );
    }
}
