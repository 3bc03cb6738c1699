use std::path::{Path, PathBuf};

use anyhow::Context;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::cli::BackupArgs;
use crate::files;
use crate::store;

const PREFIX: &str = "secure-api-";
const SUFFIX: &str = ".db";

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    let target = match (&args.file, &args.dir) {
        (Some(file), _) => file.clone(),
        (None, Some(dir)) => {
            files::ensure_private_dir(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.join(timestamped_name(OffsetDateTime::now_utc())?)
        }
        (None, None) => anyhow::bail!("give FILE or --dir"),
    };
    store::backup(&args.data_dir.data_dir, &target)?;
    println!("backup written to {}", target.display());
    if let (Some(dir), Some(keep)) = (&args.dir, args.keep) {
        for old in prune(dir, keep as usize)? {
            println!("removed old backup {}", old.display());
        }
    }
    Ok(())
}

/// `secure-api-20261128T083000Z.db`: sorts by time as text.
fn timestamped_name(now: OffsetDateTime) -> anyhow::Result<String> {
    let stamp = now.format(format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))?;
    Ok(format!("{PREFIX}{stamp}{SUFFIX}"))
}

/// Deletes all but the newest `keep` backups this command wrote in `dir`;
/// other files are never touched.
fn prune(dir: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut ours: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        })
        .collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    let removed: Vec<PathBuf> = ours.into_iter().take(excess).collect();
    for path in &removed {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_pruning_keeps_the_newest_and_foreign_files() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(
            timestamped_name(t).unwrap(),
            "secure-api-20270115T080000Z.db"
        );
        let dir = tempfile::tempdir().unwrap();
        for day in 0..5 {
            let name = timestamped_name(t + time::Duration::days(day)).unwrap();
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"keep me").unwrap();
        let removed = prune(dir.path(), 2).unwrap();
        assert_eq!(removed.len(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.txt",
                "secure-api-20270118T080000Z.db",
                "secure-api-20270119T080000Z.db"
            ]
        );
    }
}
