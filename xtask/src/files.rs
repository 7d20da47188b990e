//! Writing files so that a failure leaves the old contents, never half of the new:
//! every generated file and directory goes through here.

use std::path::Path;

use anyhow::Context;

/// Write to a sibling temporary file, then rename over `path`.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent")?;
    let mut file =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing into {}", dir.display()))?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.as_file().sync_all()?;
    // NamedTempFile is 0600; a generated file is for everyone to read.
    std::fs::set_permissions(file.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    file.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A new directory beside `dest`, to fill and then move into place with `replace_dir`.
pub(crate) fn staging_dir_for(dest: &Path) -> anyhow::Result<tempfile::TempDir> {
    let parent = dest.parent().context("the directory has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
    // tempfile makes it 0700; it becomes `dest`, which everyone may read.
    std::fs::set_permissions(staging.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(staging)
}

/// Puts the finished staging directory where `dest` was. Two renames: the old directory
/// is set aside first and put back if the second rename fails, so `dest` is always
/// either the old or the new one, never a mix.
pub(crate) fn replace_dir(staging: tempfile::TempDir, dest: &Path) -> anyhow::Result<()> {
    let staging = staging.keep();
    let name = dest.file_name().and_then(|name| name.to_str()).unwrap_or("dir");
    let aside = dest.with_file_name(format!(".{name}-old-{}", std::process::id()));
    let had_dest = dest.exists();
    if had_dest {
        std::fs::rename(dest, &aside).with_context(|| format!("moving {} aside", dest.display()))?;
    }
    if let Err(err) = std::fs::rename(&staging, dest) {
        if had_dest {
            let _ = std::fs::rename(&aside, dest);
        }
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err).with_context(|| format!("moving the new files into {}", dest.display()));
    }
    if had_dest {
        std::fs::remove_dir_all(&aside).with_context(|| format!("removing {}", aside.display()))?;
    }
    Ok(())
}

/// Copies a directory tree's files (no links or special files expected).
pub(crate) fn copy_dir_contents(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_dir_contents(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}
