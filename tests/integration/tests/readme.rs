//! The README and `docs/` as their readers meet them (issues 14 and 26): a CommonMark renderer
//! finds every heading (a code fence closed mid-line once swallowed a whole section), every
//! link and anchor resolves, every SQL snippet runs (but those marked `sql norun`, which change
//! the server's configuration or name what only a reader's server has), the SQL inside the
//! Prisma snippets runs, and the psycopg example runs as written with psycopg from PyPI.

use std::process::Command;

use pg_retention_it::{connect, count, fresh_database, pg_bin};
use postgres::Client;
use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// README.md and every page of docs/, by their path from the root, README first.
fn pages() -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(format!("{ROOT}/docs"))
        .expect("read docs/")
        .map(|entry| format!("docs/{}", entry.unwrap().file_name().to_string_lossy()))
        .filter(|name| name.ends_with(".md"))
        .collect();
    names.sort();
    names.insert(0, "README.md".into());
    names.into_iter().map(|name| (std::fs::read_to_string(format!("{ROOT}/{name}")).expect(&name), name)).map(|(text, name)| (name, text)).collect()
}

/// All of them as one text, for the snippets that may be on any page.
fn readme() -> String {
    pages().into_iter().map(|(_, text)| text).collect::<Vec<_>>().join("\n")
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

/// Each heading of a page as CommonMark sees it: its first byte and its text.
fn headings(text: &str) -> Vec<(usize, String)> {
    let mut headings = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { .. }) => current = Some((range.start, String::new())),
            Event::Text(t) | Event::Code(t) if current.is_some() => current.as_mut().unwrap().1.push_str(&t),
            Event::End(TagEnd::Heading(_)) => headings.extend(current.take()),
            _ => {}
        }
    }
    headings
}

/// The anchor GitHub gives a heading: lower case, spaces to hyphens, other punctuation dropped;
/// a repeated one gets `-1`, `-2`...
fn anchors(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    headings(text)
        .into_iter()
        .map(|(_, heading)| {
            let slug: String = heading
                .to_lowercase()
                .chars()
                .filter_map(|c| if c == ' ' { Some('-') } else if c.is_alphanumeric() || c == '-' || c == '_' { Some(c) } else { None })
                .collect();
            let n = seen.entry(slug.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { slug } else { format!("{slug}-{}", *n - 1) }
        })
        .collect()
}

#[test]
fn a_commonmark_renderer_finds_every_heading() {
    let mut all = Vec::new();
    for (name, text) in pages() {
        let found = headings(&text);
        // Every line written as a section heading must be one.
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            if line.starts_with("## ") || line.starts_with("### ") {
                assert!(
                    found.iter().any(|(at, _)| *at == offset),
                    "{name} line {:?} is not a heading to a CommonMark renderer: an unclosed code block above it?",
                    line.trim_end()
                );
            }
            offset += line.len();
        }
        assert!(text.starts_with("# ") && found.first().is_some_and(|(at, _)| *at == 0), "{name} starts with its title");
        // And no code block runs to the end of the page.
        let last = code_blocks(&text).into_iter().last().map(|b| b.1).unwrap_or_default();
        assert!(!last.contains("\n## "), "{name}: the last code block swallows sections");
        all.extend(found.into_iter().map(|(_, heading)| heading));
    }
    for wanted in [
        "Quick start", "Install", "A ten-minute tour", "Where to read on", "The Debian package", "Supported versions",
        "Managed Postgres (RDS, Cloud SQL, Azure, Supabase, Neon)", "What CREATE EXTENSION creates", "Security model",
        "Configuration reference", "Scheduling with pg_cron", "Using it from an application", "Prisma (Node)",
        "psycopg (Python)", "Reading run history", "Tests", "Benchmark", "retention.progress",
    ] {
        assert!(all.iter().any(|t| t == wanted), "no heading {wanted:?}; found {all:?}");
    }
    let readme_lines = pages()[0].1.lines().count();
    assert!(readme_lines <= 300, "the README is {readme_lines} lines; the rest belongs in docs/");
}

#[test]
fn every_link_and_anchor_resolves() {
    let pages = pages();
    let mut checked = 0;
    for (name, text) in &pages {
        let dir = std::path::Path::new(name).parent().unwrap().to_path_buf();
        for event in Parser::new(text) {
            let (Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. })) = event else { continue };
            let url = dest_url.to_string();
            if url.contains("://") || url.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = url.split_once('#').map_or((url.as_str(), None), |(p, a)| (p, Some(a)));
            let target = if path.is_empty() { std::path::PathBuf::from(name) } else { dir.join(path) };
            let on_disk = std::path::Path::new(ROOT).join(&target);
            assert!(on_disk.exists(), "{name}: link {url:?}: no file {}", target.display());
            if let Some(anchor) = anchor {
                let target_text = std::fs::read_to_string(&on_disk).unwrap();
                assert!(anchors(&target_text).iter().any(|a| a == anchor), "{name}: link {url:?}: no such heading in {}", target.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} links checked");
}

/// A database like the apps' (see `app_database`) with the other tables the docs' snippets
/// name: `sessions`, `voice_recordings` as the presets expect it, and `app.traces`.
fn snippet_database(name: &str) -> Client {
    let mut db = app_database(name);
    db.batch_execute(
        r#"CREATE TABLE sessions (id serial PRIMARY KEY, last_seen timestamptz NOT NULL);
           INSERT INTO sessions (last_seen) SELECT now() - g * interval '1 day' FROM generate_series(1, 60) g;
           CREATE TABLE voice_recordings (id bigserial PRIMARY KEY, twilio_recording_sid text, twilio_account_sid text, caller_id text,
               created_at timestamptz NOT NULL, deleted_at timestamptz, deletion_reason text);
           CREATE INDEX ON voice_recordings (created_at);
           CREATE SCHEMA app;
           CREATE TABLE app.traces (id text PRIMARY KEY, expires_at timestamp(3));"#,
    )
    .unwrap();
    db
}

#[test]
fn every_sql_snippet_runs() {
    let mut ran = 0;
    let _ = connect().batch_execute("DROP ROLE IF EXISTS docs_retention_operator");
    connect().batch_execute("CREATE ROLE docs_retention_operator").unwrap();
    for (name, text) in pages() {
        let snippets: Vec<String> = code_blocks(&text).into_iter().filter(|(info, _)| info == "sql").map(|(_, code)| code).collect();
        if snippets.is_empty() {
            continue;
        }
        let database = format!("it_docs_{}", name.trim_start_matches("docs/").trim_end_matches(".md").replace(['-', '.'], "_").to_lowercase());
        let mut db = snippet_database(&database);
        // A page whose first snippet installs it (the tour, the install page) starts without it.
        if snippets[0].trim_start().starts_with("CREATE EXTENSION pg_retention") {
            db.batch_execute("DROP EXTENSION pg_retention").unwrap();
        }
        for sql in snippets {
            // The operator of the security model's grants is this test's own role.
            let sql = sql.replace("retention_operator", "docs_retention_operator");
            // As a reader pastes it into psql: one statement at a time, outside any transaction
            // block (a CALL of run_batched refuses one).
            let mut psql = Command::new(format!("{}/psql", pg_bin()))
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", &database, "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run psql");
            std::io::Write::write_all(&mut psql.stdin.take().unwrap(), sql.as_bytes()).unwrap();
            let out = psql.wait_with_output().unwrap();
            assert!(out.status.success(), "{name}: this snippet fails:\n{sql}\n{}", String::from_utf8_lossy(&out.stderr));
            ran += 1;
        }
        drop(db);
        connect().batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).unwrap();
    }
    let _ = connect().batch_execute("DROP ROLE IF EXISTS docs_retention_operator");
    assert!(ran >= 12, "only {ran} snippets ran");
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
