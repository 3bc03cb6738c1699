//! PostgreSQL (`--database-url`), against a private cluster the tests start
//! themselves (`helpers::postgres`): the URL and its TLS, and the schema.

use crate::helpers::postgres::{PgCluster, cluster};
use crate::helpers::run_cli_with_env;

/// `secure-api migrate` (with `extra` arguments) against `url`, given in
/// the environment as an operator should (a password stays out of argv).
async fn migrate(url: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["migrate"];
    args.extend_from_slice(extra);
    let output = run_cli_with_env(&args, &[("SECURE_API_DATABASE_URL", url)], None).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn version(cluster: &PgCluster, database: &str) -> String {
    cluster
        .psql(database, "SELECT version FROM secure_api_schema")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn migrate_builds_the_schema_once_and_then_finds_it_current() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.new_database();
    let url = cluster.url(&database);

    let (ok, _, stderr) = migrate(&url, &["--check"]).await;
    assert!(!ok, "an empty database needs migrating");
    assert!(stderr.contains("no database yet"), "{stderr}");

    let (ok, stdout, stderr) = migrate(&url, &[]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("from schema version 0 to 1"), "{stdout}");
    assert!(
        stdout.contains("postgres://secure_api:***@localhost"),
        "{stdout}"
    );
    assert!(!format!("{stdout}{stderr}").contains(cluster.password()));
    assert_eq!(version(cluster, &database), "1");
    let tables = cluster.psql(
        &database,
        "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables \
         WHERE schemaname = 'public'",
    );
    for table in [
        "users",
        "refresh_tokens",
        "audit_log",
        "api_keys",
        "api_key_usage",
    ] {
        assert!(tables.split_whitespace().any(|t| t == table), "{tables}");
    }

    let (ok, stdout, _) = migrate(&url, &[]).await;
    assert!(
        ok && stdout.contains("up to date (schema version 1)"),
        "{stdout}"
    );
    let (ok, stdout, _) = migrate(&url, &["--check"]).await;
    assert!(ok && stdout.contains("up to date"), "{stdout}");
}

#[tokio::test]
async fn two_nodes_migrating_at_once_build_one_schema() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.new_database();
    let url = cluster.url(&database);
    let (a, b) = tokio::join!(migrate(&url, &[]), migrate(&url, &[]));
    assert!(a.0 && b.0, "{} / {}", a.2, b.2);
    let migrated = [&a.1, &b.1]
        .iter()
        .filter(|out| out.contains("from schema version 0 to 1"))
        .count();
    assert_eq!(migrated, 1, "exactly one migrates: {} / {}", a.1, b.1);
    assert_eq!(version(cluster, &database), "1");
}

/// Everything PostgreSQL knows about a database's shape, as sorted text.
fn shape(cluster: &PgCluster, database: &str) -> String {
    cluster.psql(
        database,
        "SELECT string_agg(line, E'\\n' ORDER BY line) FROM ( \
           SELECT format('column %s.%s %s %s %s', table_name, column_name, data_type, \
                         is_nullable, coalesce(column_default, '')) AS line \
             FROM information_schema.columns WHERE table_schema = 'public' \
           UNION ALL \
           SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public' \
           UNION ALL \
           SELECT format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid)) \
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
         ) AS shape",
    )
}

#[tokio::test]
async fn a_fresh_schema_equals_the_oldest_one_migrated_step_by_step() {
    let Some(cluster) = cluster() else { return };
    let fresh = cluster.new_database();
    assert!(migrate(&cluster.url(&fresh), &[]).await.0);

    // The oldest database: migration 1 alone, as its release left it.
    let old = cluster.new_database();
    let first_step = include_str!("../../migrations/postgres/0001_initial.sql");
    cluster.psql(&old, &format!("SET ROLE secure_api; {first_step}"));
    cluster.psql(
        &old,
        "SET ROLE secure_api; CREATE TABLE secure_api_schema (version integer NOT NULL); \
         INSERT INTO secure_api_schema VALUES (1)",
    );
    let (ok, _, stderr) = migrate(&cluster.url(&old), &[]).await;
    assert!(ok, "{stderr}");

    let (fresh_shape, old_shape) = (shape(cluster, &fresh), shape(cluster, &old));
    assert!(fresh_shape.lines().count() > 50, "{fresh_shape}");
    assert_eq!(fresh_shape, old_shape);
    assert_eq!(version(cluster, &fresh), version(cluster, &old));
}

#[tokio::test]
async fn a_database_with_other_tables_is_refused() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.new_database();
    cluster.psql(
        &database,
        "SET ROLE secure_api; CREATE TABLE orders (id int)",
    );
    let (ok, _, stderr) = migrate(&cluster.url(&database), &[]).await;
    assert!(!ok);
    assert!(stderr.contains("no secure-api schema version"), "{stderr}");
}

#[tokio::test]
async fn the_servers_certificate_is_verified_and_the_password_never_shown() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.new_database();
    let good = cluster.url(&database);
    let secret = cluster.password();

    // Signed by a CA we were not told to trust.
    let other_ca = good.replace(
        &cluster.ca_file.display().to_string(),
        &cluster.other_ca_file.display().to_string(),
    );
    // The right CA, but the certificate is for localhost, not 127.0.0.1.
    let wrong_name = good.replace("@localhost:", "@127.0.0.1:");
    // The system's CAs (no sslrootcert) do not know the test CA either.
    let system = good.split('?').next().unwrap().to_owned();
    let wrong_password = good.replace(secret, "not-the-password");
    for url in [&other_ca, &wrong_name, &system, &wrong_password] {
        let (ok, stdout, stderr) = migrate(url, &[]).await;
        assert!(!ok, "{url}: {stdout}");
        // (A machine without a system CA bundle says so instead.)
        assert!(
            stderr.contains("cannot connect to postgres://")
                || (url == &system && stderr.contains("no system CA bundle")),
            "{stderr}"
        );
        assert!(!stderr.contains(secret), "{stderr}");
        assert!(!stderr.contains("not-the-password"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    }
    // Only a server that proves its name to our CA gets the schema.
    assert!(
        cluster
            .psql(&database, "SELECT to_regclass('users')")
            .trim()
            .is_empty()
    );

    // Weaker TLS modes are refused before anything is sent.
    let (ok, _, stderr) = migrate(&format!("{good}&sslmode=require"), &[]).await;
    assert!(
        !ok && stderr.contains("sslmode=require is not supported"),
        "{stderr}"
    );

    // A Unix socket needs no TLS.
    let (ok, _, stderr) = migrate(&cluster.socket_url(&database), &[]).await;
    assert!(ok, "{stderr}");
}
