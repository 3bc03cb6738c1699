//! Files that hold secrets or user data: created private (0700 directories,
//! 0600 files), and secret files refused when others could read them.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `path` (and missing parents) with mode 0700 when it does not exist.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    // The umask may have narrowed less than we asked; make it exact.
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// A warning when group or others may list or enter `path`. The data
/// directory holds the database, its WAL and generated keys: their own 0600
/// modes are then the only thing between them and every local account, and
/// a file restored or copied in with a looser mode is readable at once. Not
/// a refusal: a directory made by hand or by a provisioning step with the
/// default umask (0755) is common, and everything we write in it is 0600.
pub fn shared_dir_warning(path: &Path) -> Option<String> {
    let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the data directory {} is open to group or others (mode {mode:04o}); \
             run `chmod 700 {}`",
            path.display(),
            path.display()
        )
    })
}

/// Creates a new file with mode 0600; fails if it already exists.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes `contents` to a new 0600 file and flushes it to disk.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = create_private_file(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error(
        "{} is readable by group or others (mode {mode:04o}); run `chmod 600 {}`",
        .path.display(),
        .path.display()
    )]
    OpenToOthers { path: PathBuf, mode: u32 },
}

/// Reads a secret file, refusing one that group or others may read.
pub fn read_secret_file(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    let unreadable = |source| SecretFileError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::OpenToOthers {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).map_err(unreadable)
}

/// Flushes a directory entry (a rename or a new file) to disk.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_open_to_group_or_others_is_warned_about() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(shared_dir_warning(&dir), None);
        for mode in [0o750, 0o705, 0o701, 0o770, 0o755] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let warning = shared_dir_warning(&dir).unwrap();
            assert!(warning.contains(&format!("mode {mode:04o}")), "{warning}");
            assert!(warning.contains("chmod 700"), "{warning}");
        }
    }

    #[test]
    fn private_files_and_dirs_have_owner_only_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = dir.join("secret");
        write_private_file(&file, b"x").unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            write_private_file(&file, b"y").is_err(),
            "must not overwrite"
        );
    }

    #[test]
    fn a_group_readable_secret_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("key");
        fs::write(&file, b"secret").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_secret_file(&file).unwrap_err().to_string();
        assert!(err.contains("readable by group or others"), "{err}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_secret_file(&file).unwrap(), b"secret");
    }
}
