//! Opening files that a queue directory holds, as Postfix's `safe_open()`
//! does: never through a symbolic link, only a regular file, and only one
//! with a single hard link (so a link planted to another file is not touched).

use rustix::fs::{Mode, OFlags, CWD};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Opens an existing file with `access` (e.g. `OFlags::RDWR`). An unlinked
/// file counts as not found.
///
/// # Errors
/// The file is missing, a symlink, not a regular file, has other hard links,
/// or cannot be opened.
pub(crate) fn open_existing_regular(path: &Path, access: OFlags) -> io::Result<File> {
    open_existing_regular_at(CWD, path, access)
}

/// As [`open_existing_regular`], with a relative `path` resolved from the
/// directory `dir`.
///
/// # Errors
/// As [`open_existing_regular`].
pub(crate) fn open_existing_regular_at(
    dir: impl AsFd,
    path: &Path,
    access: OFlags,
) -> io::Result<File> {
    // NONBLOCK: a FIFO planted under the name must not hang the open.
    let flags = access | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let fd = rustix::fs::openat(dir, path, flags, Mode::empty()).map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            io::Error::other(format!("{} is a symbolic link", path.display()))
        } else {
            io::Error::from(e)
        }
    })?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    match meta.nlink() {
        0 => Err(io::Error::from(io::ErrorKind::NotFound)),
        1 => Ok(file),
        n => Err(io::Error::other(format!(
            "{} has {n} hard links",
            path.display()
        ))),
    }
}
