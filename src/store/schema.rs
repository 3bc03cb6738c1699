//! Where a database's schema stands, the same words for every backend: what
//! `migrate` reports and why `serve` refuses a database.

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No tables and no version: a new database.
    Empty,
    Current(u32),
    Behind {
        found: u32,
        target: u32,
    },
    Ahead {
        found: u32,
        supported: u32,
    },
    /// Tables but no version of ours: some other program's database.
    Foreign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub from: u32,
    pub to: u32,
}

impl Status {
    /// The status of a database at `found` (0: none recorded) for a binary
    /// that needs `target`; `has_tables` tells a new database from a
    /// foreign one.
    pub fn of(found: u32, target: u32, has_tables: bool) -> Self {
        match found {
            0 if has_tables => Status::Foreign,
            0 => Status::Empty,
            v if v == target => Status::Current(v),
            v if v < target => Status::Behind { found: v, target },
            v => Status::Ahead {
                found: v,
                supported: target,
            },
        }
    }
}

/// The operator-facing reason a database cannot be used as it is.
pub fn refusal(status: Status) -> StoreError {
    StoreError::Schema(match status {
        Status::Behind { found, target } => format!(
            "database schema is at version {found} but this binary needs version {target}; \
             back it up, then run `secure-api migrate`"
        ),
        Status::Ahead { found, supported } => format!(
            "database schema version {found} is newer than this binary supports ({supported}); \
             run a newer secure-api"
        ),
        Status::Foreign => "the database has tables but no secure-api schema version; \
             refusing to touch it"
            .to_owned(),
        Status::Empty | Status::Current(_) => "database schema is ready".to_owned(),
    })
}
