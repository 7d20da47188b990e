//! Makes zig-linked Windows (PE32+) binaries reproducible: the linker writes the time of
//! the link into the COFF header's `TimeDateStamp`, so every relink of the same input
//! differed (the release rehearsal's rerun found it). `dist` sets it to the source date,
//! as the archive entries' times are. Byte surgery on a finished binary; it never
//! changes code or data, and the optional header's checksum, which would cover it, is 0
//! (unused for programs: Windows checks it only for drivers).

use anyhow::{bail, Context};

/// Sets the COFF header's `TimeDateStamp` to `seconds` (the source date).
pub(crate) fn make_reproducible(bytes: &mut [u8], seconds: u32) -> anyhow::Result<()> {
    let header = header_offset(bytes)?;
    // Signature (4 bytes), Machine (2), NumberOfSections (2), then TimeDateStamp.
    bytes[header + 8..header + 12].copy_from_slice(&seconds.to_le_bytes());
    Ok(())
}

/// Where the `PE\0\0` signature starts: the DOS header's `e_lfanew` says.
fn header_offset(bytes: &[u8]) -> anyhow::Result<usize> {
    if bytes.get(..2) != Some(b"MZ") {
        bail!("not a PE file: no MZ header");
    }
    let at = bytes.get(0x3c..0x40).context("not a PE file: its DOS header is cut short")?;
    let at = u32::from_le_bytes(at.try_into().unwrap()) as usize;
    if bytes.get(at..at + 4) != Some(b"PE\0\0") || bytes.len() < at + 24 {
        bail!("not a PE file: no PE signature where the DOS header points");
    }
    Ok(at)
}

/// The `TimeDateStamp` of a PE file, for tests.
#[cfg(test)]
fn time_date_stamp(bytes: &[u8]) -> anyhow::Result<u32> {
    let at = header_offset(bytes)? + 8;
    Ok(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The headers as a linker writes them: a DOS stub pointing at the PE signature and
    /// a COFF header whose time is the link's.
    fn linked_at(seconds: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x80 + 24 + 16];
        bytes[..2].copy_from_slice(b"MZ");
        bytes[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        bytes[0x80..0x84].copy_from_slice(b"PE\0\0");
        bytes[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        bytes[0x88..0x8c].copy_from_slice(&seconds.to_le_bytes());
        bytes
    }

    #[test]
    fn two_links_at_other_times_become_the_same_bytes() {
        let source_date = 1_764_000_000;
        let (mut first, mut second) = (linked_at(1_796_420_385), linked_at(1_796_420_999));
        make_reproducible(&mut first, source_date).unwrap();
        make_reproducible(&mut second, source_date).unwrap();
        assert_eq!(first, second);
        assert_eq!(time_date_stamp(&first).unwrap(), source_date);
        // Nothing but the four bytes of the time changed.
        let mut expected = linked_at(source_date);
        expected[0x88..0x8c].copy_from_slice(&source_date.to_le_bytes());
        assert_eq!(first, expected);
    }

    #[test]
    fn what_is_no_pe_file_is_refused() {
        for bytes in [b"\x7fELF".to_vec(), b"MZ".to_vec(), {
            let mut bytes = linked_at(0);
            bytes[0x80] = b'X';
            bytes
        }] {
            let mut bytes = bytes;
            assert!(make_reproducible(&mut bytes, 0).unwrap_err().to_string().contains("PE"));
        }
    }
}
