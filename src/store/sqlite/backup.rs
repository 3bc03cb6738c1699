//! Consistent online copies through SQLite's backup API: the whole database is
//! copied in one step under one read transaction, so concurrent writers are
//! neither blocked for long nor half-included.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::open_connection;
use crate::files;
use crate::store::StoreError;

const MAX_BUSY_RETRIES: u32 = 200;

/// Copies the database at `source` to the new file `dest` (mode 0600). The
/// copy is written beside `dest`, checked with `integrity_check`, and only
/// then linked into place, so `dest` is either complete or absent; an
/// existing `dest` is never overwritten.
pub fn backup(source: &Path, dest: &Path) -> Result<(), StoreError> {
    if !source.exists() {
        return Err(StoreError::Missing(source.to_owned()));
    }
    if dest.exists() {
        return Err(StoreError::Backup(format!(
            "{} already exists",
            dest.display()
        )));
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| StoreError::Backup(format!("{} is not a file name", dest.display())))?;
    let partial = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = write_copy(source, &partial).and_then(|()| {
        std::fs::hard_link(&partial, dest)
            .map_err(|e| StoreError::io(format!("cannot create {}", dest.display()), e))?;
        files::sync_dir(&dir).map_err(|e| StoreError::io("cannot sync the backup directory", e))
    });
    let _ = std::fs::remove_file(&partial);
    result
}

fn write_copy(source: &Path, partial: &Path) -> Result<(), StoreError> {
    files::create_private_file(partial)
        .map_err(|e| StoreError::io(format!("cannot create {}", partial.display()), e))?;
    let src = open_connection(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mut dst = Connection::open(partial)?;
    {
        let backup = Backup::new(&src, &mut dst)?;
        let mut retries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if retries < MAX_BUSY_RETRIES => {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                _ => return Err(StoreError::Busy),
            }
        }
    }
    // A self-contained file: no -wal beside it to forget when copying it away.
    dst.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
    let check: String = dst.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::Backup(format!(
            "the copy failed integrity_check: {check}"
        )));
    }
    dst.close().map_err(|(_, e)| StoreError::from(e))?;
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io("cannot sync the backup", e))
}
