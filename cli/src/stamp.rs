//! The build stamp's format: what `cargo xtask dist` writes into a linked `stigmer`
//! binary (version, revision, build date, pinned image digest) and how it is read back.
//!
//! Why after linking: a stamp read at compile time (`option_env!`) made cargo recompile
//! and re-run fat LTO on every target whenever the digest changed, minutes per release
//! candidate and per test. Now each target is compiled once, with a reserved block of
//! `BLOCK_LEN` bytes that starts with `MAGIC` and is zero after it; `write` fills the
//! block in place. The result is a pure function of the unstamped binary and the stamp,
//! so the archives stay reproducible, and `verify-release` reads the stamp with `read`.
//!
//! This file is the whole format. The CLI compiles it as `stamp` (build_info.rs owns
//! the block itself); xtask compiles the same file (`#[path]`) to write and read it, as
//! do the CLI's own integration tests that need a stamped binary. It may use only std.

// Each user compiles the half it needs; the unit tests below cover both.
#![allow(dead_code)]

/// Starts the reserved block. A binary holds it once, where the block begins; nothing
/// else in the CLI names these bytes (it skips `MAGIC_LEN`), so they are not copied
/// into its read-only data a second time.
const MAGIC: &[u8; 24] = b"\0stigmer-build-stamp-v1\0";
/// `MAGIC`'s length as a number: code that took `MAGIC.len()` at run time made an
/// unoptimised build (the tests' profile) emit `MAGIC` itself a second time, on Windows.
const MAGIC_LEN: usize = MAGIC.len();

/// The whole block, `MAGIC` included: room for the four fields with long revisions.
pub(crate) const BLOCK_LEN: usize = 512;

/// An unstamped block: `MAGIC`, then zeros.
pub(crate) const fn blank() -> [u8; BLOCK_LEN] {
    let mut block = [0u8; BLOCK_LEN];
    let mut at = 0;
    while at < MAGIC.len() {
        block[at] = MAGIC[at];
        at += 1;
    }
    block
}

/// What a stamp says. Text as `stigmer --version` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// `X.Y.Z`, or `X.Y.(Z+1)-snapshot-<sha>` for a snapshot.
    pub(crate) version: String,
    pub(crate) revision: String,
    /// RFC 3339 in UTC, seconds precision: the release commit's date.
    pub(crate) date: String,
    /// The agent-runner index this CLI pins (`sha256:<hex>`), when the build knew it.
    pub(crate) image_digest: Option<String>,
}

impl Stamp {
    /// `key=value` lines, in a fixed order.
    fn encode(&self) -> String {
        let mut text = format!("version={}\nrevision={}\ndate={}\n", self.version, self.revision, self.date);
        if let Some(digest) = &self.image_digest {
            text.push_str(&format!("image={digest}\n"));
        }
        text
    }

    /// The stamp a block's payload (what follows `MAGIC`) holds, `None` when unstamped
    /// or unreadable.
    fn decode(payload: &[u8]) -> Option<Stamp> {
        let end = payload.iter().position(|&b| b == 0).unwrap_or(payload.len());
        let text = std::str::from_utf8(&payload[..end]).ok()?;
        let field = |key: &str| {
            text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned)
        };
        Some(Stamp {
            version: field("version")?,
            revision: field("revision")?,
            date: field("date")?,
            image_digest: field("image"),
        })
    }
}

/// Reads the stamp of the block `block` (the CLI's own, as it sits in memory).
pub(crate) fn read_block(block: &[u8; BLOCK_LEN]) -> Option<Stamp> {
    Stamp::decode(&block[MAGIC_LEN..])
}

/// Where the block starts in `binary`: the one place `MAGIC` occurs.
fn find_block(binary: &[u8]) -> Result<usize, String> {
    let mut found = magic_positions(binary);
    let at = found.next().ok_or("no stamp block in the binary: was it built from cli/ of this tree?")?;
    if found.next().is_some() {
        return Err("the stamp block's marker occurs twice in the binary; refusing to guess".to_owned());
    }
    if binary.len() < at + BLOCK_LEN {
        return Err("the binary ends inside its stamp block".to_owned());
    }
    Ok(at)
}

/// Each place `MAGIC` starts in `binary`: candidates by its second byte (its first, a
/// zero, is the commonest byte of a binary), then the whole marker. xtask's test builds
/// are unoptimised, and there comparing a window at every byte of a ten-megabyte binary
/// was about 1.5 % of a whole test run's CPU.
fn magic_positions(binary: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut from = 1;
    std::iter::from_fn(move || {
        while from < binary.len() {
            let second = from + binary[from..].iter().position(|&byte| byte == MAGIC[1])?;
            from = second + 1;
            let at = second - 1;
            if binary.get(at..at + MAGIC_LEN) == Some(&MAGIC[..]) {
                return Some(at);
            }
        }
        None
    })
}

/// Fills the unstamped block of `binary` with `stamp`. Refuses a binary stamped before:
/// `dist` always stamps a fresh build, so a stamp already there means a mix-up.
pub(crate) fn write(binary: &mut [u8], stamp: &Stamp) -> Result<(), String> {
    let at = find_block(binary)?;
    let payload = &mut binary[at + MAGIC_LEN..at + BLOCK_LEN];
    if payload.iter().any(|&b| b != 0) {
        return Err("the binary is stamped already".to_owned());
    }
    let text = stamp.encode();
    // One zero byte at least ends the text.
    if text.len() >= payload.len() || text.bytes().any(|b| b == 0) {
        return Err(format!("the stamp does not fit its {} bytes: {text:?}", payload.len()));
    }
    payload[..text.len()].copy_from_slice(text.as_bytes());
    Ok(())
}

/// The stamp of a binary file's bytes: `Ok(None)` when it has the block but no stamp.
pub(crate) fn read(binary: &[u8]) -> Result<Option<Stamp>, String> {
    let at = find_block(binary)?;
    Ok(Stamp::decode(&binary[at + MAGIC_LEN..at + BLOCK_LEN]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(digest: Option<&str>) -> Stamp {
        Stamp {
            version: "1.3.0".to_owned(),
            revision: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            date: "2026-11-23T10:00:00Z".to_owned(),
            image_digest: digest.map(str::to_owned),
        }
    }

    /// A binary as the linker leaves it: other bytes around one blank block.
    fn binary() -> Vec<u8> {
        let mut bytes = b"\x7fELF code and data".to_vec();
        bytes.extend_from_slice(&blank());
        bytes.extend_from_slice(b"more data after the block");
        bytes
    }

    #[test]
    fn a_written_stamp_reads_back_and_nothing_outside_the_block_changes() {
        let digest = "sha256:4c3a0e4c1b1f8c6a4d3b2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";
        for stamp in [stamp(Some(digest)), stamp(None)] {
            let before = binary();
            let mut after = before.clone();
            assert_eq!(read(&after), Ok(None));
            write(&mut after, &stamp).unwrap();
            assert_eq!(read(&after), Ok(Some(stamp.clone())));
            assert_eq!(after.len(), before.len());
            let at = find_block(&before).unwrap();
            assert_eq!(before[..at], after[..at]);
            assert_eq!(before[at + BLOCK_LEN..], after[at + BLOCK_LEN..]);
            // What the CLI does with its own block.
            assert_eq!(read_block(after[at..at + BLOCK_LEN].try_into().unwrap()), Some(stamp));
        }
        assert_eq!(read_block(&blank()), None);
    }

    #[test]
    fn a_stamped_or_foreign_binary_is_refused() {
        let mut stamped = binary();
        write(&mut stamped, &stamp(None)).unwrap();
        let err = write(&mut stamped, &stamp(None)).unwrap_err();
        assert!(err.contains("stamped already"), "{err}");

        let err = write(&mut b"no block here".to_vec(), &stamp(None)).unwrap_err();
        assert!(err.contains("no stamp block"), "{err}");

        let mut twice = binary();
        twice.extend_from_slice(&blank());
        assert!(write(&mut twice, &stamp(None)).unwrap_err().contains("twice"));

        // Near misses around the block, and the block first and last in the file.
        let mut near = b"\0s\0stigmer-build-stamp-v2\0".to_vec();
        let before = near.len();
        near.extend_from_slice(&binary());
        near.extend_from_slice(b"\0stigmer-build-stamp-v1");
        assert_eq!(find_block(&near), find_block(&binary()).map(|at| at + before));
        assert_eq!(find_block(&blank()), Ok(0));
        let mut at_the_end = b"code".to_vec();
        at_the_end.extend_from_slice(&blank()[..BLOCK_LEN - 1]);
        assert!(find_block(&at_the_end).unwrap_err().contains("ends inside"));

        let mut long = stamp(None);
        long.revision = "x".repeat(BLOCK_LEN);
        assert!(write(&mut binary(), &long).unwrap_err().contains("does not fit"));
    }
}
