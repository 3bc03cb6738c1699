//! The memory cap the kernel enforces on this process (a systemd unit's
//! `MemoryMax=`, a container limit), so that `serve` can refuse a hashing
//! configuration that would be OOM-killed at the first burst of logins
//! instead of restarting in a loop.

use std::path::Path;

/// What the process needs beside the kept Argon2 memory: the runtime, the
/// SQLite page caches, TLS buffers of 1024 connections, the user caches.
pub const MARGIN_BYTES: u64 = 256 * 1024 * 1024;

/// Values at or above this mean "no limit" (cgroup v1 writes a page-rounded
/// `i64::MAX`).
const UNLIMITED: u64 = 1 << 62;

/// The smallest memory limit over this process's cgroup and its ancestors,
/// cgroup v2 (`memory.max`) or v1 (`memory.limit_in_bytes`); `None` when no
/// limit is set or none can be read.
pub fn current() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    discover(&membership, Path::new("/sys/fs/cgroup"))
}

/// `membership` is the text of `/proc/<pid>/cgroup`; `root` is where the
/// cgroup file systems are mounted.
pub fn discover(membership: &str, root: &Path) -> Option<u64> {
    let mut lowest: Option<u64> = None;
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        let candidates: Vec<(std::path::PathBuf, &str)> = if id == "0" && controllers.is_empty() {
            // Unified hierarchy: mounted at the root, or under `unified` on
            // hybrid systems.
            vec![
                (root.to_path_buf(), "memory.max"),
                (root.join("unified"), "memory.max"),
            ]
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![(root.join("memory"), "memory.limit_in_bytes")]
        } else {
            continue;
        };
        for (mount, file) in candidates {
            if let Some(limit) = lowest_on_path(&mount, relative, file) {
                lowest = Some(lowest.map_or(limit, |l| l.min(limit)));
            }
        }
    }
    lowest
}

/// The cgroup itself and each ancestor up to the mount: a parent's limit
/// binds its children too.
fn lowest_on_path(mount: &Path, relative: &str, file: &str) -> Option<u64> {
    let mut dir = mount.join(relative);
    let mut lowest: Option<u64> = None;
    loop {
        if let Some(limit) = read_limit(&dir.join(file)) {
            lowest = Some(lowest.map_or(limit, |l| l.min(limit)));
        }
        if dir == mount || !dir.pop() || !dir.starts_with(mount) {
            return lowest;
        }
    }
}

fn read_limit(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let value: u64 = text.trim().parse().ok()?;
    (value < UNLIMITED).then_some(value)
}

/// Hashing that would not fit under the process's memory limit.
#[derive(Debug, thiserror::Error)]
#[error(
    "password hashing needs up to {} MiB ({workers} workers x {} MiB of Argon2 memory) \
     plus {} MiB for the rest of the service, but this process may use only {} MiB \
     (cgroup memory limit, e.g. MemoryMax=); lower --hash-workers or --argon2-memory-kib, \
     or raise the limit",
    .kept / MIB,
    u64::from(*.memory_kib) / 1024,
    MARGIN_BYTES / MIB,
    .limit / MIB
)]
pub struct DoesNotFit {
    workers: usize,
    memory_kib: u32,
    kept: u64,
    limit: u64,
}

/// Refuses `workers` hashing threads that each keep `memory_kib` when,
/// with the margin, they would not fit under `limit`.
pub fn check_hashing_fits(workers: usize, memory_kib: u32, limit: u64) -> Result<(), DoesNotFit> {
    let kept = (workers as u64).saturating_mul(u64::from(memory_kib) * 1024);
    if kept.saturating_add(MARGIN_BYTES) <= limit {
        return Ok(());
    }
    Err(DoesNotFit {
        workers,
        memory_kib,
        kept,
        limit,
    })
}

const MIB: u64 = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, file: &str, value: &str) {
        let dir = root.join(relative);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), value).unwrap();
    }

    #[test]
    fn the_unified_hierarchy_limit_and_its_ancestors_count() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "system.slice/secure-api.service",
            "memory.max",
            "max\n",
        );
        write(root.path(), "system.slice", "memory.max", "805306368\n");
        let found = discover("0::/system.slice/secure-api.service\n", root.path());
        assert_eq!(found, Some(805_306_368));

        write(
            root.path(),
            "system.slice/secure-api.service",
            "memory.max",
            "1073741824\n",
        );
        write(root.path(), "system.slice", "memory.max", "max\n");
        let found = discover("0::/system.slice/secure-api.service\n", root.path());
        assert_eq!(found, Some(1_073_741_824));
    }

    #[test]
    fn hybrid_and_v1_hierarchies_are_read_too() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "unified/a", "memory.max", "max\n");
        write(
            root.path(),
            "memory/b",
            "memory.limit_in_bytes",
            "536870912\n",
        );
        write(
            root.path(),
            "memory",
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let membership = "4:memory:/b\n1:cpu:/\n0::/a\n";
        assert_eq!(discover(membership, root.path()), Some(536_870_912));
    }

    #[test]
    fn no_limit_or_nothing_readable_is_none() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "x", "memory.max", "max\n");
        assert_eq!(discover("0::/x\n", root.path()), None);
        assert_eq!(discover("0::/missing\n", root.path()), None);
        assert_eq!(discover("garbage\n", root.path()), None);
    }

    #[test]
    fn hashing_must_fit_under_the_limit_with_the_margin() {
        let gib = 1024 * MIB;
        // The default: 4 workers x 64 MiB + 256 MiB under the unit's 1G.
        assert!(check_hashing_fits(4, 65_536, gib).is_ok());
        // The 16-core host of the audit: one worker per core.
        let refused = check_hashing_fits(16, 65_536, gib).unwrap_err().to_string();
        assert!(refused.contains("1024 MiB"), "{refused}");
        assert!(refused.contains("only 1024 MiB"), "{refused}");
        assert!(refused.contains("16 workers x 64 MiB"), "{refused}");
        assert!(check_hashing_fits(1, 65_536, 256 * MIB).is_err());
        assert!(check_hashing_fits(usize::MAX, u32::MAX, u64::MAX - 1).is_err());
    }
}
