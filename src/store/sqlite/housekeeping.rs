//! Retention: expired refresh tokens and families, audit rows past their
//! retention and API key usage no longer shown, deleted in small batches. Each batch is one short write
//! transaction that finds its rows through an index (see `explain` in the
//! tests), so the write lock is never held for long, however large the
//! backlog.

use rusqlite::Connection;

use super::users::format_time;
use crate::store::StoreError;
use crate::store::rows::{Cutoffs, Prunable};

fn sql(what: Prunable) -> &'static str {
    match what {
        Prunable::Tokens => {
            "DELETE FROM refresh_tokens WHERE jti IN \
             (SELECT jti FROM refresh_tokens WHERE expires_at <= ?1 LIMIT ?2)"
        }
        Prunable::Families => {
            "DELETE FROM refresh_families WHERE id IN \
             (SELECT id FROM refresh_families WHERE expires_at <= ?1 LIMIT ?2)"
        }
        Prunable::Audit => {
            "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log WHERE occurred_at < ?1 LIMIT ?2)"
        }
        Prunable::KeyUsage => {
            "DELETE FROM api_key_usage WHERE (key_id, day) IN \
             (SELECT key_id, day FROM api_key_usage WHERE day < ?1 LIMIT ?2)"
        }
    }
}

/// Deletes at most `limit` rows of one kind. Sessions compare unix seconds
/// with `sessions_before`, audit rows their RFC 3339 time (whole seconds,
/// so text order is time order) with `audit_before`, usage its Julian day.
pub(super) fn delete_batch(
    tx: &Connection,
    what: Prunable,
    cutoffs: Cutoffs,
    limit: usize,
) -> Result<usize, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = tx.prepare_cached(sql(what))?;
    let deleted = match what {
        Prunable::Tokens | Prunable::Families => {
            statement.execute((cutoffs.sessions_before.unix_timestamp(), limit))?
        }
        Prunable::Audit => statement.execute((format_time(cutoffs.audit_before)?, limit))?,
        Prunable::KeyUsage => statement.execute((cutoffs.usage_before.to_julian_day(), limit))?,
    };
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rows::Pruned;
    use crate::store::{PoolOptions, Store};
    use time::{Duration, OffsetDateTime};

    const BATCH: usize = 500;

    /// More rows of every kind than one batch holds, old and recent mixed.
    fn seed(conn: &rusqlite::Connection, now: OffsetDateTime) {
        // One transaction: thousands of separate commits would each sync.
        conn.execute_batch("BEGIN").unwrap();
        let t = |d: Duration| (now + d).unix_timestamp();
        let text = |d: Duration| format_time(now + d).unwrap();
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash, role, created_at, updated_at) \
             VALUES ('u1', 'someone', 'someone@example.com', 'x', 'user', ?1, ?1)",
            [text(Duration::days(-500))],
        )
        .unwrap();
        let family = |id: &str, expires: i64, tokens: &[(&str, i64)]| {
            conn.execute(
                "INSERT INTO refresh_families (id, user_id, created_at, expires_at) \
                 VALUES (?1, 'u1', 0, ?2)",
                (id, expires),
            )
            .unwrap();
            for (jti, token_expires) in tokens {
                conn.execute(
                    "INSERT INTO refresh_tokens (jti, family_id, issued_at, expires_at) \
                     VALUES (?1, ?2, 0, ?3)",
                    (jti, id, token_expires),
                )
                .unwrap();
            }
        };
        // 1,200 expired logins with two tokens each: 2,400 tokens.
        for i in 0..1200 {
            let end = t(Duration::days(-2));
            family(
                &format!("old{i}"),
                end,
                &[(&format!("old{i}a"), end), (&format!("old{i}b"), end)],
            );
        }
        // Live logins; one holds a token that ended before its family.
        let end = t(Duration::days(5));
        family(
            "live0",
            end,
            &[("live0a", t(Duration::days(-1))), ("live0b", end)],
        );
        family("live1", end, &[("live1a", end)]);
        // Expired, but less than the caller's cutoff ago: kept for now.
        family(
            "just_ended",
            t(Duration::minutes(-10)),
            &[("just_ended_a", t(Duration::minutes(-10)))],
        );
        for i in 0..1300 {
            conn.execute(
                "INSERT INTO audit_log (occurred_at, event) VALUES (?1, 'login_success')",
                [text(Duration::days(-400) + Duration::seconds(i))],
            )
            .unwrap();
        }
        for days in [-364, -30, 0] {
            conn.execute(
                "INSERT INTO audit_log (occurred_at, event) VALUES (?1, 'login_success')",
                [text(Duration::days(days))],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO api_keys (id, user_id, name, prefix, digest, scopes, rate_limit, \
             created_at, expires_at) VALUES ('k1', 'u1', 'ci', 'sak_x', 'd', '', '1/second', 0, 0)",
            [],
        )
        .unwrap();
        // 700 days of use: the last 30 (today included) stay.
        let today = now.date().to_julian_day();
        for day in today - 699..=today {
            conn.execute(
                "INSERT INTO api_key_usage (key_id, day, requests, denied) VALUES ('k1', ?1, 1, 0)",
                [day],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    fn cutoffs(now: OffsetDateTime) -> Cutoffs {
        Cutoffs {
            sessions_before: now - Duration::hours(1),
            audit_before: now - Duration::days(365),
            usage_before: now.date() - Duration::days(29),
        }
    }

    fn ids(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[tokio::test]
    async fn expired_sessions_and_old_audit_rows_go_in_batches_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::DB_FILE);
        let options = PoolOptions {
            connections: 2,
            ..PoolOptions::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        seed(&conn, now);

        let pruned = store.prune(cutoffs(now), BATCH).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                refresh_tokens: 2401,
                refresh_families: 1200,
                audit_rows: 1300,
                key_usage_days: 670,
            }
        );
        assert_eq!(
            ids(&conn, "SELECT id FROM refresh_families ORDER BY id"),
            ["just_ended", "live0", "live1"]
        );
        assert_eq!(
            ids(&conn, "SELECT jti FROM refresh_tokens ORDER BY jti"),
            ["just_ended_a", "live0b", "live1a"]
        );
        let audit_left: i64 = conn
            .query_row("SELECT count(*) FROM audit_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(audit_left, 3);
        let users: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 1);
        let oldest_day: i32 = conn
            .query_row("SELECT min(day) FROM api_key_usage", [], |r| r.get(0))
            .unwrap();
        assert_eq!(oldest_day, now.date().to_julian_day() - 29);

        // A second pass finds nothing more.
        let again = store.prune(cutoffs(now), BATCH).await.unwrap();
        assert!(!again.any(), "{again:?}");
    }

    #[test]
    fn one_batch_deletes_at_most_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::open_admin_connection(&dir.path().join("t.db"), true).unwrap();
        super::super::migrations::Plan::CURRENT
            .migrate(&mut conn)
            .unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        seed(&conn, now);
        let tx = conn.transaction().unwrap();
        for what in Prunable::ALL {
            let deleted = delete_batch(&tx, what, cutoffs(now), BATCH).unwrap();
            assert_eq!(deleted, BATCH, "{what:?}");
        }
    }

    /// Every batch reaches its rows through an index, never a table scan:
    /// a batch that scanned would hold the write lock for as long as the
    /// table is big.
    #[test]
    fn every_batch_finds_its_rows_through_an_index() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::migrations::SCHEMA)
            .unwrap();
        for what in Prunable::ALL {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", sql(what)))
                .unwrap()
                .query_map((0, 1), |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("\n");
            let scans_a_table = plan
                .lines()
                .any(|step| step.starts_with("SCAN") && !step.contains("INDEX"));
            assert!(!scans_a_table, "{what:?} scans a table:\n{plan}");
            assert!(
                ["_expiry", "audit_log_time", "api_key_usage_day"]
                    .iter()
                    .any(|index| plan.contains(index)),
                "{what:?}:\n{plan}"
            );
        }
    }
}
