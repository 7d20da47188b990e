//! Makes zig-linked Mach-O binaries reproducible: zig's `LC_UUID` differs between clean
//! rebuilds of the same input, so `dist` rewrites it from the binary's content (as ld64
//! does) and, when the binary carries an ad-hoc code signature (arm64 must), re-hashes
//! the signed pages. Byte surgery on a finished binary; it never changes code or data.

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

const MH_MAGIC_64: u32 = 0xfeed_facf;
const LC_UUID: u32 = 0x1b;
const LC_CODE_SIGNATURE: u32 = 0x1d;
const CSMAGIC_EMBEDDED_SIGNATURE: u32 = 0xfade_0cc0;
const CSMAGIC_CODEDIRECTORY: u32 = 0xfade_0c02;
const CS_HASHTYPE_SHA256: u8 = 2;

/// Where the UUID and the signature sit in a 64-bit Mach-O file.
struct Layout {
    uuid: Option<usize>,
    /// (offset, size) of the code signature's SuperBlob.
    signature: Option<(usize, usize)>,
}

fn le32(bytes: &[u8], at: usize) -> anyhow::Result<u32> {
    let word = bytes.get(at..at + 4).context("truncated Mach-O file")?;
    Ok(u32::from_le_bytes(word.try_into().unwrap()))
}

fn be32(bytes: &[u8], at: usize) -> anyhow::Result<u32> {
    let word = bytes.get(at..at + 4).context("truncated code signature")?;
    Ok(u32::from_be_bytes(word.try_into().unwrap()))
}

fn layout(bytes: &[u8]) -> anyhow::Result<Layout> {
    if le32(bytes, 0)? != MH_MAGIC_64 {
        bail!("not a 64-bit little-endian Mach-O file");
    }
    let commands = le32(bytes, 16)?;
    let mut at = 32;
    let mut layout = Layout { uuid: None, signature: None };
    for _ in 0..commands {
        let (command, size) = (le32(bytes, at)?, le32(bytes, at + 4)? as usize);
        match command {
            LC_UUID => layout.uuid = Some(at + 8),
            LC_CODE_SIGNATURE => {
                layout.signature = Some((le32(bytes, at + 8)? as usize, le32(bytes, at + 12)? as usize))
            }
            _ => {}
        }
        at += size;
    }
    Ok(layout)
}

/// Sets the UUID to a hash of everything but the UUID and the signature, then brings
/// the signature's page hashes up to date.
pub(crate) fn make_reproducible(bytes: &mut [u8]) -> anyhow::Result<()> {
    let layout = layout(bytes)?;
    let Some(uuid_at) = layout.uuid else { return Ok(()) };
    let content_end = layout.signature.map_or(bytes.len(), |(offset, _)| offset);
    bytes[uuid_at..uuid_at + 16].fill(0);
    let digest = Sha256::digest(&bytes[..content_end]);
    let mut uuid: [u8; 16] = digest[..16].try_into().unwrap();
    // An RFC 4122 name-based UUID, as ld64's are.
    uuid[6] = (uuid[6] & 0x0f) | 0x50;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    bytes[uuid_at..uuid_at + 16].copy_from_slice(&uuid);
    if let Some((offset, _)) = layout.signature {
        rehash_code_directory(bytes, offset)?;
    }
    Ok(())
}

/// Recomputes every code slot of the CodeDirectory at the SuperBlob at `offset`. An
/// ad-hoc signature has no certificate over the CodeDirectory, so updated hashes are a
/// valid signature.
fn rehash_code_directory(bytes: &mut [u8], offset: usize) -> anyhow::Result<()> {
    if be32(bytes, offset)? != CSMAGIC_EMBEDDED_SIGNATURE {
        bail!("the code signature is not an embedded signature");
    }
    let count = be32(bytes, offset + 8)?;
    for index in 0..count as usize {
        let blob = offset + be32(bytes, offset + 12 + index * 8 + 4)? as usize;
        if be32(bytes, blob)? != CSMAGIC_CODEDIRECTORY {
            continue;
        }
        let hash_offset = be32(bytes, blob + 16)? as usize;
        let code_slots = be32(bytes, blob + 28)? as usize;
        let code_limit = be32(bytes, blob + 32)? as usize;
        let (hash_size, hash_type, page_shift) = (bytes[blob + 36], bytes[blob + 37], bytes[blob + 39]);
        if hash_type != CS_HASHTYPE_SHA256 || hash_size != 32 {
            bail!("unsupported code signature hash type {hash_type}");
        }
        let page = 1usize << page_shift;
        for slot in 0..code_slots {
            let start = slot * page;
            let hash = Sha256::digest(&bytes[start..(start + page).min(code_limit)]);
            let at = blob + hash_offset + slot * 32;
            bytes[at..at + 32].copy_from_slice(&hash);
        }
    }
    Ok(())
}
