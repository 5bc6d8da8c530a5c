//! Private files on disk: created 0600 in a 0700 directory, written whole (temp file, fsync,
//! rename), read back only when no other user can read them.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::IdentityError;

/// First line of every identity key file (the format and its version).
pub const KEY_FILE_HEADER: &str = "ash-identity-v1";

/// The most a key file may hold; anything bigger is not one of ours.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// Writes `contents` to `path` so that it is never visible half-written or with loose
/// permissions. Creates missing parent directories with mode 0700.
pub fn write_key_file(path: &Path, contents: &str) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io { path: path.to_owned(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.tmp{}-{attempt}", std::process::id()));
        match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                attempt += 1
            }
            Err(e) => return Err(io(e)),
        }
    };
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    // Make the rename durable; failure here does not lose the key, so it is not an error.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Reads a private file, refusing one that group or others could read or write.
pub fn load_key_file(path: &Path) -> Result<Zeroizing<String>, IdentityError> {
    let io = |source| IdentityError::Io { path: path.to_owned(), source };
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Permissions { path: path.to_owned(), mode });
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(IdentityError::KeyFile {
            path: path.to_owned(),
            line: 0,
            message: format!("{} bytes is too big for a key file", meta.len()),
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| IdentityError::KeyFile {
        path: path.to_owned(),
        line: 0,
        message: "not UTF-8 text".into(),
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}
