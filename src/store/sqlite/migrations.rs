//! Schema versions in `PRAGMA user_version`. A fresh database is built from
//! `schema.sql` in one step; an older one runs the append-only list of
//! migrations, each in its own exclusive transaction. A newer database, or one
//! that is not ours, is refused.

use rusqlite::{Connection, TransactionBehavior};

use crate::store::StoreError;
pub use crate::store::schema::{Outcome, Status, refusal};

/// The schema a fresh database gets.
pub const SCHEMA: &str = include_str!("../../../schema.sql");

/// Migration `i` takes a database from version `i` to `i + 1`.
pub const STEPS: &[&str] = &[
    include_str!("../../../migrations/0001_initial.sql"),
    include_str!("../../../migrations/0002_refresh_rotation_detail.sql"),
    include_str!("../../../migrations/0003_retention_and_storage_probe.sql"),
    include_str!("../../../migrations/0004_two_factor_and_sessions.sql"),
    include_str!("../../../migrations/0005_api_keys.sql"),
    include_str!("../../../migrations/0006_api_key_usage.sql"),
];

/// A schema and the steps that reach it; the real one is [`Plan::CURRENT`].
pub struct Plan<'a> {
    pub schema: &'a str,
    pub steps: &'a [&'a str],
}

impl Plan<'static> {
    pub const CURRENT: Plan<'static> = Plan {
        schema: SCHEMA,
        steps: STEPS,
    };
}

impl Plan<'_> {
    pub fn target(&self) -> u32 {
        u32::try_from(self.steps.len()).unwrap_or(u32::MAX)
    }

    pub fn status(&self, conn: &Connection) -> Result<Status, StoreError> {
        let found: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
            [],
            |row| row.get(0),
        )?;
        Ok(Status::of(found, self.target(), tables > 0))
    }

    /// Brings the database to the current version, or explains why it cannot.
    pub fn migrate(&self, conn: &mut Connection) -> Result<Outcome, StoreError> {
        let target = self.target();
        match self.status(conn)? {
            Status::Empty => {
                apply(conn, self.schema, target)?;
                Ok(Outcome {
                    from: 0,
                    to: target,
                })
            }
            Status::Current(v) => Ok(Outcome { from: v, to: v }),
            Status::Behind { found, .. } => {
                let pending = self.steps.iter().zip(1u32..).skip(found as usize);
                for (sql, version) in pending {
                    apply(conn, sql, version)?;
                }
                Ok(Outcome {
                    from: found,
                    to: target,
                })
            }
            status => Err(refusal(status)),
        }
    }

    /// For `serve` and the other commands: a new file is initialized, a current
    /// one accepted, anything else refused with what the operator should do.
    pub fn ensure_ready(&self, conn: &mut Connection) -> Result<(), StoreError> {
        match self.status(conn)? {
            Status::Empty => {
                apply(conn, self.schema, self.target())?;
                Ok(())
            }
            Status::Current(_) => Ok(()),
            status => Err(refusal(status)),
        }
    }
}

/// Runs `sql` and records `version` in one exclusive transaction, so a failed
/// step leaves the database exactly as it was.
fn apply(conn: &mut Connection, sql: &str, version: u32) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    tx.execute_batch(sql)?;
    // PRAGMA takes no bound parameters; `version` is an integer we computed.
    tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(conn: &Connection) -> Vec<(String, String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT type, name, sql FROM sqlite_master \
                 WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .unwrap();
        stmt.query_map([], |r| {
            let sql: Option<String> = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, normalize(&sql.unwrap_or_default())))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Without comments and white space: `ALTER TABLE … ADD COLUMN` splices
    /// `, col TYPE` into the stored text just before the closing parenthesis,
    /// which spaces it differently from the same column written in a fresh
    /// `CREATE TABLE`.
    fn normalize(sql: &str) -> String {
        sql.lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect()
    }

    fn version(conn: &Connection) -> u32 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn fresh_schema_equals_oldest_plus_every_step() {
        let mut fresh = Connection::open_in_memory().unwrap();
        Plan::CURRENT.migrate(&mut fresh).unwrap();

        // The oldest database: built by the first step alone, then migrated.
        let mut old = Connection::open_in_memory().unwrap();
        apply(&mut old, STEPS[0], 1).unwrap();
        let outcome = Plan::CURRENT.migrate(&mut old).unwrap();
        assert_eq!(outcome.to, Plan::CURRENT.target());

        assert_eq!(schema_of(&fresh), schema_of(&old));
        assert_eq!(version(&fresh), version(&old));
        assert!(!schema_of(&fresh).is_empty());
    }

    const TEST_STEPS: &[&str] = &[
        "CREATE TABLE t (a INTEGER);",
        "ALTER TABLE t ADD COLUMN b TEXT;",
        "CREATE INDEX t_b ON t (b);",
    ];
    const TEST_PLAN: Plan<'static> = Plan {
        schema: "CREATE TABLE t (a INTEGER, b TEXT); CREATE INDEX t_b ON t (b);",
        steps: TEST_STEPS,
    };

    #[test]
    fn an_older_database_runs_only_the_pending_steps() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, TEST_STEPS[0], 1).unwrap();
        conn.execute("INSERT INTO t (a) VALUES (7)", []).unwrap();
        assert_eq!(
            TEST_PLAN.status(&conn).unwrap(),
            Status::Behind {
                found: 1,
                target: 3
            }
        );
        assert!(
            TEST_PLAN.ensure_ready(&mut conn).is_err(),
            "serve must refuse"
        );
        assert_eq!(
            TEST_PLAN.migrate(&mut conn).unwrap(),
            Outcome { from: 1, to: 3 }
        );
        assert_eq!(TEST_PLAN.status(&conn).unwrap(), Status::Current(3));
        let kept: i64 = conn.query_row("SELECT a FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 7, "data survives migration");
    }

    #[test]
    fn a_failing_step_leaves_the_database_unchanged() {
        let broken: &[&str] = &[
            "CREATE TABLE t (a INTEGER);",
            "ALTER TABLE nope ADD COLUMN x;",
        ];
        let plan = Plan {
            schema: "",
            steps: broken,
        };
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, broken[0], 1).unwrap();
        assert!(plan.migrate(&mut conn).is_err());
        assert_eq!(version(&conn), 1);
    }

    #[test]
    fn newer_and_foreign_databases_are_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        let err = Plan::CURRENT.migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("newer"), "{err}");

        let mut foreign = Connection::open_in_memory().unwrap();
        foreign.execute_batch("CREATE TABLE other (x)").unwrap();
        assert_eq!(Plan::CURRENT.status(&foreign).unwrap(), Status::Foreign);
        assert!(Plan::CURRENT.ensure_ready(&mut foreign).is_err());
    }
}
