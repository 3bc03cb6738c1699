//! Schema versions in the table `secure_api_schema`. A fresh database is
//! built from `schema.postgres.sql`; an older one runs the append-only list
//! in `migrations/postgres/`. Everything happens in one transaction that
//! first takes an advisory lock, so that nodes started at once with
//! `migrate` wait for each other and the second finds nothing left to do;
//! PostgreSQL's DDL is transactional, so a failed step leaves the database
//! as it was.

use postgres::{Client, GenericClient};

use crate::store::StoreError;
use crate::store::schema::{Outcome, Status, refusal};

/// The schema a fresh database gets.
pub const SCHEMA: &str = include_str!("../../../schema.postgres.sql");

/// Migration `i` takes a database from version `i` to `i + 1`.
pub const STEPS: &[&str] = &[include_str!(
    "../../../migrations/postgres/0001_initial.sql"
)];

/// The advisory lock every migration holds ("secure-api schema").
const MIGRATION_LOCK: i64 = 0x7365_6375_7265_6170;

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

    /// Reads where the database stands; changes nothing.
    pub fn status(&self, client: &mut impl GenericClient) -> Result<Status, StoreError> {
        let versioned: bool = client
            .query_one("SELECT to_regclass('secure_api_schema') IS NOT NULL", &[])?
            .try_get(0)?;
        let found = if versioned {
            let version: Option<i32> = client
                .query_opt("SELECT version FROM secure_api_schema", &[])?
                .map(|row| row.try_get(0))
                .transpose()?;
            u32::try_from(version.unwrap_or(0)).unwrap_or(0)
        } else {
            0
        };
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_tables \
                 WHERE schemaname = current_schema() AND tablename <> 'secure_api_schema'",
                &[],
            )?
            .try_get(0)?;
        Ok(Status::of(found, self.target(), tables > 0))
    }

    /// Brings the database to the current version, or explains why it cannot.
    pub fn migrate(&self, client: &mut Client) -> Result<Outcome, StoreError> {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        let target = self.target();
        let outcome = match self.status(&mut tx)? {
            Status::Empty => {
                tx.batch_execute(self.schema)?;
                record(&mut tx, target)?;
                Outcome {
                    from: 0,
                    to: target,
                }
            }
            Status::Current(v) => Outcome { from: v, to: v },
            Status::Behind { found, .. } => {
                let pending = self.steps.iter().zip(1u32..).skip(found as usize);
                for (sql, version) in pending {
                    tx.batch_execute(sql)?;
                    record(&mut tx, version)?;
                }
                Outcome {
                    from: found,
                    to: target,
                }
            }
            status => return Err(refusal(status)),
        };
        tx.commit()?;
        Ok(outcome)
    }
}

/// Records `version`, creating the version table when a step is the first.
fn record(tx: &mut impl GenericClient, version: u32) -> Result<(), StoreError> {
    let version = i32::try_from(version).unwrap_or(i32::MAX);
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS secure_api_schema (version integer NOT NULL); \
         DELETE FROM secure_api_schema;",
    )?;
    tx.execute(
        "INSERT INTO secure_api_schema (version) VALUES ($1)",
        &[&version],
    )?;
    Ok(())
}
