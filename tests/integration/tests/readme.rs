//! The README as its readers meet it (issue 14): a CommonMark renderer finds every heading (a
//! code fence closed mid-line once swallowed a whole section), the SQL inside its Prisma
//! snippets runs, and its psycopg example runs as written with psycopg from PyPI.

use std::process::Command;

use pg_retention_it::{connect, count, fresh_database};
use postgres::Client;
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Parser, Tag, TagEnd};

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");

fn readme() -> String {
    std::fs::read_to_string(README).expect("read README.md")
}

/// Each fenced code block of the README with its info string, as CommonMark reads them.
fn code_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => open = Some((info.to_string(), String::new())),
            Event::Text(t) if open.is_some() => open.as_mut().unwrap().1.push_str(&t),
            Event::End(TagEnd::CodeBlock) => blocks.extend(open.take()),
            _ => {}
        }
    }
    blocks
}

#[test]
fn a_commonmark_renderer_finds_every_heading() {
    let text = readme();
    // Where CommonMark sees a heading (its first byte), and its text.
    let mut headings: Vec<(usize, HeadingLevel, String)> = Vec::new();
    let mut current: Option<(usize, HeadingLevel, String)> = None;
    for (event, range) in Parser::new(&text).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => current = Some((range.start, level, String::new())),
            Event::Text(t) | Event::Code(t) if current.is_some() => current.as_mut().unwrap().2.push_str(&t),
            Event::End(TagEnd::Heading(_)) => headings.extend(current.take()),
            _ => {}
        }
    }
    // Every line written as a section heading must be one.
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with("## ") || line.starts_with("### ") {
            assert!(
                headings.iter().any(|(at, _, _)| *at == offset),
                "README line {:?} is not a heading to a CommonMark renderer: an unclosed code block above it?",
                line.trim_end()
            );
        }
        offset += line.len();
    }
    for wanted in [
        "Quick start", "Install into an existing PostgreSQL", "The Debian package", "Supported versions",
        "Managed Postgres (RDS, Cloud SQL, Azure, Supabase, Neon)", "What CREATE EXTENSION creates", "Security model",
        "Configuration reference", "Scheduling with pg_cron", "Using it from an application", "Prisma (Node)",
        "psycopg (Python)", "Reading run history", "Tests", "Benchmark",
    ] {
        assert!(headings.iter().any(|(_, _, t)| t == wanted), "no heading {wanted:?}; found {:?}", headings.iter().map(|h| &h.2).collect::<Vec<_>>());
    }
    // And no code block runs to the end of the file.
    let last = code_blocks(&text).into_iter().last().map(|b| b.1).unwrap_or_default();
    assert!(!last.contains("\n## "), "the last code block swallows sections");
}

/// A database like the apps' (the Prisma tables, indexed as the README says), with 10 expired
/// and 4 live traces and 8 old and 3 recent usage rows.
fn app_database(name: &str) -> Client {
    let mut db = fresh_database(name);
    db.batch_execute(
        r#"CREATE EXTENSION pg_retention;
           CREATE TABLE "ConversationTrace" (id text PRIMARY KEY, "conversationId" text NOT NULL,
               "createdAt" timestamp(3) NOT NULL DEFAULT timezone('UTC', now()), payload bytea NOT NULL, "expiresAt" timestamp(3));
           CREATE INDEX ON "ConversationTrace" ("expiresAt");
           INSERT INTO "ConversationTrace" (id, "conversationId", payload, "expiresAt")
                SELECT 'e' || g, 'c', '\x00', timezone('UTC', now()) - interval '1 day' FROM generate_series(1, 10) g;
           INSERT INTO "ConversationTrace" (id, "conversationId", payload, "expiresAt")
                SELECT 'l' || g, 'c', '\x00', timezone('UTC', now()) + interval '1 day' FROM generate_series(1, 4) g;
           CREATE TABLE "AgentUsage" (id serial PRIMARY KEY, "timestamp" timestamp(3) NOT NULL);
           CREATE INDEX ON "AgentUsage" ("timestamp");
           INSERT INTO "AgentUsage" ("timestamp") SELECT timezone('UTC', now()) - interval '100 days' FROM generate_series(1, 8);
           INSERT INTO "AgentUsage" ("timestamp") SELECT timezone('UTC', now()) - interval '10 days' FROM generate_series(1, 3);"#,
    )
    .unwrap();
    db
}

#[test]
fn the_sql_inside_the_prisma_snippets_runs() {
    let blocks = code_blocks(&readme());
    let sql: Vec<String> = blocks
        .iter()
        .filter(|(info, _)| info == "ts")
        .flat_map(|(_, code)| {
            // prisma.$queryRaw<...>`SQL` (the type argument may be there or not)
            code.split("$queryRaw")
                .skip(1)
                .filter(|rest| rest.starts_with(['<', '`']))
                .map(|rest| rest.split('`').nth(1).expect("a template literal").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(sql.len() >= 3, "the Prisma snippets' queries: {sql:?}");
    assert!(sql.iter().all(|q| !q.contains("${")), "no interpolation to stand in for");
    let mut db = app_database("it_readme_prisma");
    for query in &sql {
        let rows = db.query(query.as_str(), &[]).unwrap_or_else(|e| panic!("{query}: {e}"));
        assert!(!rows.is_empty(), "{query}: a row");
    }
    assert_eq!(count(&mut db, r#"SELECT count(*) FROM "ConversationTrace""#), 4, "the expired traces went");
    assert_eq!(count(&mut db, r#"SELECT count(*) FROM "AgentUsage""#), 3, "the old usage went");
    // The trap the snippet converts for: the count is a bigint (a BigInt in Prisma).
    let kind = db.query(sql[0].as_str(), &[]).unwrap()[0].columns()[0].type_().name().to_string();
    assert_eq!(kind, "int8");
    drop(db);
    connect().batch_execute("DROP DATABASE it_readme_prisma WITH (FORCE)").unwrap();
}

/// A virtual environment with psycopg from PyPI, made once in target/.
fn python_with_psycopg() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/readme-venv");
    let python = format!("{venv}/bin/python");
    let has = |python: &str| Command::new(python).args(["-c", "import psycopg"]).status().is_ok_and(|s| s.success());
    if !has(&python) {
        let made = Command::new("/usr/bin/python3").args(["-m", "venv", "--clear", venv]).output().expect("python3 -m venv");
        assert!(made.status.success(), "venv: {}", String::from_utf8_lossy(&made.stderr));
        let pip = Command::new(format!("{venv}/bin/pip")).args(["install", "-q", "psycopg[binary]"]).output().expect("pip");
        assert!(pip.status.success(), "pip install psycopg[binary]: {}", String::from_utf8_lossy(&pip.stderr));
    }
    python
}

#[test]
fn the_psycopg_example_runs_as_written() {
    let blocks = code_blocks(&readme());
    let examples: Vec<&String> = blocks.iter().filter(|(info, _)| info == "python").map(|(_, code)| code).collect();
    assert_eq!(examples.len(), 1, "one psycopg example");
    let python = python_with_psycopg();
    let mut db = app_database("it_readme_psycopg");
    let out = Command::new(&python)
        .args(["-c", examples[0]])
        .env("PGHOST", std::env::var("PGHOST").unwrap())
        .env("PGPORT", std::env::var("PGPORT").unwrap())
        .env("PGUSER", "postgres")
        .env("PGDATABASE", "it_readme_psycopg")
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the example failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("notice: retention policy \"expired_traces\""), "{stdout}");
    assert!(lines[0].contains("10"), "the NOTICE has the count: {stdout}");
    assert_eq!(lines[1], "expired_traces: succeeded 10");
    assert_eq!(lines[2], "old_agent_usage: 8");
    assert!(lines[3].starts_with("cutoff: ") && lines[3].ends_with("+00:00"), "{stdout}");
    assert_eq!(count(&mut db, r#"SELECT count(*) FROM "ConversationTrace""#), 4);
    drop(db);
    connect().batch_execute("DROP DATABASE it_readme_psycopg WITH (FORCE)").unwrap();
}
