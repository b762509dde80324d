//! Issue 25, `hide_expired`, as the application meets it: Prisma's `"ConversationTrace"`, made by
//! the application's own role (as `prisma migrate` leaves it: that role owns the table), read
//! with the statements Prisma sends (`findMany`, `findUnique`) over the extended protocol, in a
//! database of its own.

use std::time::{Duration, Instant};

use pg_retention_it::{connect, fresh_database, run_policy};
use postgres::{Client, Config, NoTls};

const DB: &str = "it_hide_expired";
const APP: &str = "it_hide_app";

/// A session as the application's role.
fn as_app() -> Client {
    let mut config = Config::new();
    config
        .host(&std::env::var("PGHOST").expect("PGHOST"))
        .port(std::env::var("PGPORT").expect("PGPORT").parse().expect("PGPORT is a port"))
        .user(APP)
        .dbname(DB);
    config.connect(NoTls).expect("connect as the application's role")
}

/// Prisma's `findMany({ where: { tenantId }, orderBy: { createdAt: 'desc' } })`: the ids.
fn find_many(app: &mut Client, tenant: &str) -> Vec<String> {
    app.query(
        r#"SELECT "public"."ConversationTrace"."id", "public"."ConversationTrace"."tenantId", "public"."ConversationTrace"."createdAt",
                  "public"."ConversationTrace"."expiresAt"
             FROM "public"."ConversationTrace" WHERE "public"."ConversationTrace"."tenantId" = $1
            ORDER BY "public"."ConversationTrace"."createdAt" DESC, "public"."ConversationTrace"."id" ASC OFFSET $2"#,
        &[&tenant, &0i64],
    )
    .expect("findMany")
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// Prisma's `findUnique({ where: { id } })`: whether it found the row.
fn find_unique(app: &mut Client, id: &str) -> bool {
    app.query_opt(
        r#"SELECT "public"."ConversationTrace"."id" FROM "public"."ConversationTrace" WHERE ("public"."ConversationTrace"."id" = $1 AND 1=1) LIMIT $2 OFFSET $3"#,
        &[&id, &1i64, &0i64],
    )
    .expect("findUnique")
    .is_some()
}

/// `n` traces of tenant `acme` named `prefix-i`, expiring `offset` from now (NULL: never).
fn insert(app: &mut Client, prefix: &str, n: i32, offset: Option<&str>) {
    let expires = offset.map_or("NULL".to_string(), |offset| format!("timezone('UTC', now()) + interval '{offset}'"));
    app.batch_execute(&format!(
        r#"INSERT INTO "ConversationTrace" (id, "tenantId", "conversationId", payload, "expiresAt")
           SELECT '{prefix}-' || g, 'acme', 'c' || g, '\x00', {expires} FROM generate_series(1, {n}) g"#
    ))
    .expect("insert traces");
}

/// A run's ledger entry's keys with their JSON types, and its details' keys: its shape.
fn ledger_shape(admin: &mut Client, run_id: i64) -> (Vec<String>, Vec<String>) {
    admin.batch_execute("SELECT retention.verify_ledger()").unwrap(); // seals committed entries
    let row = admin
        .query_one(
            "SELECT array(SELECT key || ': ' || jsonb_typeof(value) FROM jsonb_each(entry) ORDER BY 1),
                    array(SELECT jsonb_object_keys(CASE jsonb_typeof(entry->'details') WHEN 'object' THEN entry->'details' ELSE '{}' END) ORDER BY 1)
               FROM retention.ledger WHERE (entry->>'run_id')::bigint = $1",
            &[&run_id],
        )
        .expect("the run's ledger entry");
    (row.get(0), row.get(1))
}

#[test]
fn a_trace_vanishes_from_the_app_as_it_expires_and_the_next_run_still_deletes_and_records_it() {
    let mut admin = fresh_database(DB);
    admin
        .batch_execute(&format!(
            "CREATE EXTENSION pg_retention;
             DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP}') THEN CREATE ROLE {APP} LOGIN; END IF; END $$;
             GRANT CREATE ON SCHEMA public TO {APP};"
        ))
        .unwrap();
    let mut app = as_app();
    // Prisma's migration for the model, run by the application's role.
    app.batch_execute(
        r#"CREATE TABLE "ConversationTrace" (
               "id" TEXT NOT NULL, "tenantId" TEXT NOT NULL, "conversationId" TEXT NOT NULL,
               "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP, "payload" BYTEA NOT NULL, "expiresAt" TIMESTAMP(3),
               CONSTRAINT "ConversationTrace_pkey" PRIMARY KEY ("id"));
           CREATE INDEX "ConversationTrace_expiresAt_idx" ON "ConversationTrace"("expiresAt");"#,
    )
    .unwrap();

    // A run without hiding, for the ledger entry's shape as it was.
    insert(&mut app, "before", 20, Some("-1 day"));
    let plain = run_policy(&mut admin, "expired_traces");
    assert_eq!(plain["rows_deleted"], 20, "{plain}");
    let plain_shape = ledger_shape(&mut admin, plain["run_id"].as_i64().expect("run_id"));

    insert(&mut app, "expired", 25, Some("-1 hour"));
    insert(&mut app, "live", 10, Some("1 day"));
    insert(&mut app, "never", 5, None);
    insert(&mut app, "soon", 1, Some("3 seconds"));
    let soon_expires = Instant::now() + Duration::from_secs(3);
    admin.batch_execute("SELECT retention.alter_policy('expired_traces', hide_expired => true)").unwrap();
    let runs_before = count_runs(&mut admin);

    let seen = find_many(&mut app, "acme");
    assert_eq!(seen.len(), 16, "live, never-expiring and the one about to expire: {seen:?}");
    assert!(seen.iter().all(|id| !id.starts_with("expired-")), "no expired trace: {seen:?}");
    assert!(find_unique(&mut app, "soon-1") && !find_unique(&mut app, "expired-1"));

    std::thread::sleep(soon_expires.saturating_duration_since(Instant::now()) + Duration::from_millis(500));
    let seen = find_many(&mut app, "acme");
    assert_eq!(seen.len(), 15, "the trace that expired meanwhile is gone: {seen:?}");
    assert!(!seen.contains(&"soon-1".to_string()) && !find_unique(&mut app, "soon-1"), "findUnique misses it too");
    assert_eq!(count_runs(&mut admin), runs_before, "no run happened meanwhile");
    let stored: i64 = admin.query_one(r#"SELECT count(*) FROM "ConversationTrace""#, &[]).unwrap().get(0);
    assert_eq!(stored, 41, "hidden, not deleted: 25 expired, the one just expired, 15 live");

    // The next run sees what the application no longer does, deletes it and counts it.
    let hidden = run_policy(&mut admin, "expired_traces");
    assert_eq!(hidden["rows_deleted"], 26, "{hidden}");
    let stored: i64 = admin.query_one(r#"SELECT count(*) FROM "ConversationTrace""#, &[]).unwrap().get(0);
    assert_eq!(stored, 15);
    let hidden_shape = ledger_shape(&mut admin, hidden["run_id"].as_i64().expect("run_id"));
    assert_eq!(hidden_shape, plain_shape, "the ledger entry has the same keys with hiding as without");
    let rows: i64 = admin
        .query_one("SELECT (entry->>'rows')::bigint FROM retention.ledger WHERE (entry->>'run_id')::bigint = $1", &[&hidden["run_id"].as_i64()])
        .unwrap()
        .get(0);
    assert_eq!(rows, 26, "the ledger records the hidden rows the run deleted");
    let broken: Option<i64> = admin.query_one("SELECT retention.verify_ledger()", &[]).unwrap().get(0);
    assert_eq!(broken, None, "the ledger verifies");

    drop(app);
    drop(admin);
    let mut cleanup = connect();
    cleanup.batch_execute(&format!("DROP DATABASE {DB} WITH (FORCE)")).unwrap();
    cleanup.batch_execute(&format!("DROP ROLE {APP}")).unwrap();
}

fn count_runs(admin: &mut Client) -> i64 {
    admin.query_one("SELECT count(*) FROM retention.runs", &[]).unwrap().get(0)
}
