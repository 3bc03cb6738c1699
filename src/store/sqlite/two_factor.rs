//! Two-factor rows: the sealed TOTP secrets on the account, backup-code
//! hashes, and key fingerprints.

use rusqlite::{Connection, OptionalExtension};

use crate::store::StoreError;
use crate::store::rows::TwoFactorState;

pub(super) fn state(
    conn: &Connection,
    user_id: &str,
) -> Result<Option<TwoFactorState>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT totp_secret, totp_pending, totp_last_step, \
             (SELECT count(*) FROM backup_codes WHERE user_id = ?1) \
             FROM users WHERE id = ?1",
        )?
        .query_row([user_id], |r| {
            Ok(TwoFactorState {
                secret: r.get(0)?,
                pending: r.get(1)?,
                last_step: r.get(2)?,
                backup_codes: r.get(3)?,
            })
        })
        .optional()?)
}

pub(super) fn count_sealed(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM users WHERE totp_secret IS NOT NULL OR totp_pending IS NOT NULL",
        )?
        .query_row([], |r| r.get(0))?)
}

pub(super) fn set_pending(
    tx: &Connection,
    user_id: &str,
    sealed: Option<&[u8]>,
) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE users SET totp_pending = ?2 WHERE id = ?1")?
        .execute((user_id, sealed))?;
    Ok(())
}

pub(super) fn enable(
    tx: &Connection,
    user_id: &str,
    sealed: &[u8],
    step: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE users SET totp_secret = ?2, totp_pending = NULL, totp_last_step = ?3 WHERE id = ?1",
    )?
    .execute((user_id, sealed, step))?;
    Ok(())
}

pub(super) fn disable(tx: &Connection, user_id: &str) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL \
         WHERE id = ?1",
    )?
    .execute([user_id])?;
    tx.prepare_cached("DELETE FROM backup_codes WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(())
}

pub(super) fn set_step(tx: &Connection, user_id: &str, step: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE users SET totp_last_step = ?2 WHERE id = ?1")?
        .execute((user_id, step))?;
    Ok(())
}

pub(super) fn replace_codes(
    tx: &Connection,
    user_id: &str,
    hashes: &[String],
) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM backup_codes WHERE user_id = ?1")?
        .execute([user_id])?;
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO backup_codes (user_id, code_hash) VALUES (?1, ?2)",
    )?;
    for hash in hashes {
        insert.execute((user_id, hash))?;
    }
    Ok(())
}

pub(super) fn consume_code(tx: &Connection, user_id: &str, hash: &str) -> Result<bool, StoreError> {
    let deleted = tx
        .prepare_cached("DELETE FROM backup_codes WHERE user_id = ?1 AND code_hash = ?2")?
        .execute((user_id, hash))?;
    Ok(deleted == 1)
}

pub(super) fn fingerprint(conn: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT fingerprint FROM key_fingerprints WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

pub(super) fn put_fingerprint(
    tx: &Connection,
    name: &str,
    fingerprint: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO key_fingerprints (name, fingerprint) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint",
    )?
    .execute((name, fingerprint))?;
    Ok(())
}
