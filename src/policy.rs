//! The policy catalog: loading a policy, checking what it names, and building the SQL it runs.
//! Identifiers are quoted by Postgres (`quote_ident`), never pasted as given.

use pgrx::datum::Interval;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use crate::limits;

/// Reports an ERROR with an optional hint. Never returns.
pub fn raise(code: PgSqlErrorCode, message: String, hint: Option<String>) -> ! {
    let mut report = ErrorReport::new(code, message, "pg_retention");
    if let Some(hint) = hint {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Unwraps an SPI result; a failure here is a bug of ours, not something a user typed.
pub fn spi<T>(result: SpiResult<T>) -> T {
    result.unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("pg_retention: SPI failed: {e}"), None))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Delete when the time column is before now.
    ExpiresAt,
    /// Delete when the time column is older than `retain`.
    OlderThan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delete,
    SoftDelete,
    /// Delete the media at Twilio, then soft-delete the row.
    TwilioRecording,
}

impl Action {
    pub fn parse(text: &str) -> Action {
        match text {
            "soft_delete" => Action::SoftDelete,
            "twilio_recording" => Action::TwilioRecording,
            _ => Action::Delete,
        }
    }

    /// Actions that keep the row and mark it instead.
    fn marks_rows(self) -> bool {
        matches!(self, Action::SoftDelete | Action::TwilioRecording)
    }
}

/// What a policy's table turned out to be, checked against the live catalog.
pub struct Target {
    pub relid: pg_sys::Oid,
    /// A partitioned table has no blocks of its own, so no block-range batches.
    pub partitioned: bool,
    pub time_type: TimeType,
    /// An index leads with the time column: batches can then be ranges of it.
    pub time_indexed: bool,
    /// SQL type of the key column (twilio_recording only), from `format_type`.
    pub id_type: Option<String>,
}

/// The SQL type of a policy's time column; decides how the cutoff is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeType {
    /// `timestamp without time zone`, taken to hold UTC (as Prisma writes it).
    Timestamp,
    TimestampTz,
    /// Compared with the cutoff's UTC date: a row dated on the cutoff day stays.
    Date,
}

impl TimeType {
    fn from_oid(oid: pg_sys::Oid) -> Option<Self> {
        match oid {
            pg_sys::TIMESTAMPOID => Some(TimeType::Timestamp),
            pg_sys::TIMESTAMPTZOID => Some(TimeType::TimestampTz),
            pg_sys::DATEOID => Some(TimeType::Date),
            _ => None,
        }
    }

    /// The cutoff (parameter `$1`, a timestamptz) in the column's own type, so that the
    /// comparison never depends on the session's TimeZone and can use an index.
    fn cutoff_expr(self) -> &'static str {
        match self {
            TimeType::TimestampTz => "$1",
            TimeType::Timestamp => "pg_catalog.timezone('UTC', $1)",
            TimeType::Date => "pg_catalog.timezone('UTC', $1)::pg_catalog.date",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub table_schema: String,
    pub table_name: String,
    pub time_column: String,
    pub rule: Rule,
    pub retain: Option<Interval>,
    pub action: Action,
    pub soft_delete_column: Option<String>,
    pub reason_column: Option<String>,
    pub deletion_reason: String,
    pub sid_column: Option<String>,
    pub id_column: Option<String>,
    pub batch_size: i32,
    /// A disabled policy is skipped by every trigger; preview still works.
    pub enabled: bool,
}

/// Batches along the time column's index. `$2` is the time value the last batch ended at
/// (text; NULL at first).
pub struct Ranges {
    /// Where a batch of `$3` rows after `$2` ends (NULL: fewer remain).
    pub end: String,
    /// How many rows (up to `$3` + 1) have exactly the time `$2`: ties that one batch cannot hold.
    pub ties: String,
    /// Acts on the rows after `$2` up to `$3` (NULL: up to the cutoff); `$5` says whether `$3`
    /// itself is included; `$4` the reason.
    pub act: String,
    /// Acts on at most `$3` rows with exactly the time `$2`; `$4` the reason.
    pub act_ties: String,
}

/// The SQL a run executes. `$1` is always the cutoff (timestamptz); "the reason" is
/// `Policy::reason()`, passed always, NULL and unused when the policy has none.
pub struct Statements {
    /// delete / soft_delete without an index on a timestamp time column: one batch of rows
    /// picked by ctid. `$2` the batch size, `$3` the reason.
    pub batch: String,
    /// delete / soft_delete with such an index: batches are ranges of the time column, which
    /// read each row once, as a plain DELETE does.
    pub ranges: Option<Ranges>,
    /// delete / soft_delete of a plain table: the rows past the cutoff in blocks `$2` (a tid,
    /// inclusive) to `$3` (exclusive), `$4` the reason: each page read once, as a sequential
    /// DELETE reads it. For large backlogs, and for tables without an index.
    pub blocks: Option<String>,
    /// twilio_recording: the next rows to send, as (key text, SID). `$2` the last key seen
    /// (text, NULL at first), `$3` the batch size.
    pub fetch: String,
    /// twilio_recording: marks rows whose SID Twilio confirmed. `$2` their keys (text[]),
    /// `$3` their SIDs (text[]), `$4` the reason.
    pub mark: String,
    /// How many rows are past the cutoff now (bigint).
    pub count: String,
    /// Counts what a run would touch now, with the same predicate; returns jsonb.
    pub preview: String,
}

impl Policy {
    /// Loads a policy by name, or reports that there is none.
    pub fn load(name: &str) -> Policy {
        let found = Spi::connect(|client| -> SpiResult<Option<Policy>> {
            let rows = client.select(
                "SELECT table_schema, table_name, time_column, rule, retain, action,
                        soft_delete_column, reason_column, deletion_reason, batch_size, enabled,
                        sid_column, id_column
                   FROM retention.policies WHERE name = $1",
                Some(1),
                &[name.into()],
            )?;
            if rows.is_empty() {
                return Ok(None);
            }
            let row = rows.first();
            let text = |ordinal| -> SpiResult<String> { Ok(row.get::<String>(ordinal)?.unwrap_or_default()) };
            Ok(Some(Policy {
                name: name.to_string(),
                table_schema: text(1)?,
                table_name: text(2)?,
                time_column: text(3)?,
                rule: if text(4)? == "older_than" { Rule::OlderThan } else { Rule::ExpiresAt },
                retain: row.get::<Interval>(5)?,
                action: Action::parse(&text(6)?),
                soft_delete_column: row.get::<String>(7)?,
                reason_column: row.get::<String>(8)?,
                deletion_reason: text(9)?,
                batch_size: row.get::<i32>(10)?.unwrap_or(limits::MAX_BATCH_SIZE),
                enabled: row.get::<bool>(11)?.unwrap_or(false),
                sid_column: row.get::<String>(12)?,
                id_column: row.get::<String>(13)?,
            }))
        });
        spi(found).unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("retention policy \"{name}\" does not exist"),
                Some("SELECT name FROM retention.policies lists the policies; retention.add_policy() adds one.".into()),
            )
        })
    }

    /// The value for the reason column, when the policy marks rows and names one. The batch
    /// statements take it as their last parameter (unused, and NULL, otherwise).
    pub fn reason(&self) -> Option<&str> {
        (self.action.marks_rows() && self.reason_column.is_some()).then_some(self.deletion_reason.as_str())
    }

    fn qualified_table(&self) -> String {
        pgrx::spi::quote_qualified_identifier(&self.table_schema, &self.table_name)
    }

    /// Checks that the table and columns the policy names exist and have usable types.
    /// `at_run` adds a hint for a run (point the policy elsewhere) rather than for a write.
    /// `warn_index` warns when no index leads with the time column (on writes and runs, not previews).
    pub fn check_target(&self, at_run: bool, warn_index: bool) -> Target {
        let table = self.qualified_table();
        let relation = spi(Spi::connect(|client| -> SpiResult<Option<(pg_sys::Oid, String)>> {
            let rows = client.select(
                "SELECT c.oid, c.relkind::text FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2",
                Some(1),
                &[self.table_schema.as_str().into(), self.table_name.as_str().into()],
            )?;
            if rows.is_empty() {
                return Ok(None);
            }
            let row = rows.first();
            Ok(Some((row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid), row.get::<String>(2)?.unwrap_or_default())))
        }));
        let repoint_hint = || {
            if at_run {
                Some(format!(
                    "Point the policy at your table: SELECT retention.alter_policy('{}', table_schema => '...', table_name => '...', time_column => '...');",
                    self.name.replace('\'', "''")
                ))
            } else {
                None
            }
        };
        let Some((relid, relkind)) = relation else {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("retention policy \"{}\": table {table} does not exist", self.name),
                repoint_hint().or_else(|| Some("Create the table first, or name an existing one in table_schema and table_name.".into())),
            )
        };
        if relkind != "r" && relkind != "p" {
            raise(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!("retention policy \"{}\": {table} is not a table", self.name),
                Some("A policy can only name an ordinary or partitioned table, not a view or other relation.".into()),
            )
        }

        let time_type_oid = self.column_type(relid, &table, &self.time_column, repoint_hint());
        let time_type = TimeType::from_oid(time_type_oid).unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "retention policy \"{}\": column \"{}\" of table {table} has type {}, but a time column must be timestamp, timestamptz or date",
                    self.name,
                    self.time_column,
                    type_name(time_type_oid)
                ),
                None,
            )
        });

        let time_indexed = self.time_column_indexed(relid);
        if warn_index && !time_indexed {
            self.warn_without_index(&table);
        }
        if self.action.marks_rows() {
            let Some(column) = &self.soft_delete_column else {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("retention policy \"{}\": action {} needs soft_delete_column", self.name, self.action_name()),
                    Some("Name the timestamp column that marks a row deleted, e.g. soft_delete_column => 'deleted_at'.".into()),
                )
            };
            let oid = self.column_type(relid, &table, column, repoint_hint());
            if !matches!(TimeType::from_oid(oid), Some(TimeType::Timestamp | TimeType::TimestampTz)) {
                raise(
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "retention policy \"{}\": soft_delete_column \"{column}\" of table {table} has type {}, but must be timestamp or timestamptz",
                        self.name,
                        type_name(oid)
                    ),
                    None,
                )
            }
            if let Some(reason) = &self.reason_column {
                self.column_type(relid, &table, reason, repoint_hint());
            }
        }
        let mut id_type = None;
        if self.action == Action::TwilioRecording {
            let needed = |value: &Option<String>, field: &str, example: &str| -> String {
                value.clone().unwrap_or_else(|| {
                    raise(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!("retention policy \"{}\": action twilio_recording needs {field}", self.name),
                        Some(format!("For example {field} => '{example}'.")),
                    )
                })
            };
            let sid_column = needed(&self.sid_column, "sid_column", "twilio_recording_sid");
            let oid = self.column_type(relid, &table, &sid_column, repoint_hint());
            if ![pg_sys::TEXTOID, pg_sys::VARCHAROID].contains(&oid) {
                raise(
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "retention policy \"{}\": sid_column \"{sid_column}\" of table {table} has type {}, but must be text or varchar",
                        self.name,
                        type_name(oid)
                    ),
                    None,
                )
            }
            let id_column = needed(&self.id_column, "id_column", "id");
            let oid = self.column_type(relid, &table, &id_column, repoint_hint());
            id_type = Some(type_name(oid));
        }
        Target { relid, partitioned: relkind == "p", time_type, time_indexed, id_type }
    }

    fn time_column_indexed(&self, relid: pg_sys::Oid) -> bool {
        spi(Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i
                              JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                             WHERE i.indrelid = $1 AND a.attname = $2 AND i.indisvalid)",
            &[relid.into(), self.time_column.as_str().into()],
        ))
        .unwrap_or(false)
    }

    /// Without an index led by the time column, every run reads the whole table: say so.
    fn warn_without_index(&self, table: &str) {
        {
            let column = pgrx::spi::quote_identifier(&self.time_column);
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_WARNING,
                format!(
                    "retention policy \"{}\": column {column} of table {table} has no index, so each run reads the whole table",
                    self.name
                ),
                "pg_retention",
            )
            .set_hint(format!("CREATE INDEX ON {table} ({column});"))
            .report(PgLogLevel::WARNING);
        }
    }

    fn action_name(&self) -> &'static str {
        match self.action {
            Action::Delete => "delete",
            Action::SoftDelete => "soft_delete",
            Action::TwilioRecording => "twilio_recording",
        }
    }

    fn column_type(&self, relid: pg_sys::Oid, table: &str, column: &str, hint: Option<String>) -> pg_sys::Oid {
        let oid = spi(Spi::connect(|client| -> SpiResult<Option<pg_sys::Oid>> {
            let rows = client.select(
                "SELECT atttypid FROM pg_catalog.pg_attribute
                  WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                Some(1),
                &[relid.into(), column.into()],
            )?;
            if rows.is_empty() {
                return Ok(None);
            }
            rows.first().get::<pg_sys::Oid>(1)
        }));
        oid.unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("retention policy \"{}\": column \"{column}\" does not exist in table {table}", self.name),
                hint,
            )
        })
    }

    /// Checks every field of a policy being written. The table and columns must exist now when
    /// `target_changed` (always on insert): so a policy whose table is gone can still be disabled.
    pub fn check_for_write(&self, rule: &str, action: &str, target_changed: bool) {
        let invalid = |message: String, hint: Option<&str>| -> ! {
            raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message, hint.map(str::to_string))
        };
        if self.name.trim().is_empty() {
            invalid("retention policy name must not be empty".into(), None);
        }
        match rule {
            "expires_at" | "older_than" => {}
            other => invalid(
                format!("retention policy \"{}\": rule must be 'expires_at' or 'older_than', not '{other}'", self.name),
                Some("expires_at deletes rows whose time column is before now; older_than deletes rows older than retain."),
            ),
        }
        match action {
            "delete" | "soft_delete" | "twilio_recording" => {}
            other => invalid(
                format!(
                    "retention policy \"{}\": action must be 'delete', 'soft_delete' or 'twilio_recording', not '{other}'",
                    self.name
                ),
                None,
            ),
        }
        match (self.rule, &self.retain) {
            (Rule::ExpiresAt, Some(_)) => invalid(
                format!("retention policy \"{}\": retain must be NULL for rule expires_at", self.name),
                Some("Rule expires_at deletes rows whose time column is before now; use rule older_than to keep rows for an interval."),
            ),
            (Rule::OlderThan, None) => invalid(
                format!("retention policy \"{}\": rule older_than needs retain, a positive interval", self.name),
                Some("For example retain => interval '90 days'."),
            ),
            (Rule::OlderThan, Some(retain)) => {
                check_retain(&self.name, *retain);
            }
            (Rule::ExpiresAt, None) => {}
        }
        if let Err(message) = limits::check_batch_size(self.batch_size) {
            invalid(format!("retention policy \"{}\": {message}", self.name), None);
        }
        if target_changed {
            self.check_target(false, true);
        }
    }

    /// Builds the statements from Postgres-quoted identifiers.
    pub fn statements(&self, target: &Target) -> Statements {
        let quoted = spi(Spi::connect(|client| -> SpiResult<[Option<String>; 6]> {
            let rows = client.select(
                "SELECT pg_catalog.quote_ident($1) || '.' || pg_catalog.quote_ident($2),
                        pg_catalog.quote_ident($3), pg_catalog.quote_ident($4), pg_catalog.quote_ident($5),
                        pg_catalog.quote_ident($6), pg_catalog.quote_ident($7)",
                Some(1),
                &[
                    self.table_schema.as_str().into(),
                    self.table_name.as_str().into(),
                    self.time_column.as_str().into(),
                    self.soft_delete_column.clone().into(),
                    self.reason_column.clone().into(),
                    self.sid_column.clone().into(),
                    self.id_column.clone().into(),
                ],
            )?;
            let row = rows.first();
            Ok([row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?, row.get(6)?])
        }));
        let [Some(table), Some(time_column), marker, reason, sid, id] = quoted else {
            raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "pg_retention: could not quote the policy's identifiers".into(), None)
        };
        let cutoff = target.time_type.cutoff_expr();
        let predicate = match (&marker, self.action.marks_rows()) {
            (Some(marker), true) => format!("{time_column} < {cutoff} AND {marker} IS NULL"),
            _ => format!("{time_column} < {cutoff}"),
        };
        let set_marker = |reason_param: &str| {
            let marker = marker.clone().unwrap_or_default();
            match &reason {
                Some(reason) => format!("{marker} = pg_catalog.now(), {reason} = {reason_param}"),
                None => format!("{marker} = pg_catalog.now()"),
            }
        };
        // ctid picks the batch; repeating the predicate keeps every touched row inside it.
        // A changed row is re-checked against the whole WHERE clause before it is touched,
        // so a batch never reaches outside the predicate, whichever way it picks its rows.
        let batch = match self.action {
            Action::Delete => format!(
                "DELETE FROM {table} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table} WHERE {predicate} LIMIT $2)) AND {predicate}"
            ),
            _ => format!(
                "UPDATE {table} SET {} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table} WHERE {predicate} LIMIT $2)) AND {predicate}",
                set_marker("$3")
            ),
        };
        // Dates have too many ties for ranges of one batch; they keep the ctid batches.
        let ranges = (target.time_indexed && target.time_type != TimeType::Date && self.action != Action::TwilioRecording).then(|| {
            let column_type = if target.time_type == TimeType::Timestamp { "pg_catalog.timestamp" } else { "pg_catalog.timestamptz" };
            let after = format!("($2::pg_catalog.text IS NULL OR {time_column} > CAST($2 AS {column_type}))");
            let at = format!("{time_column} = CAST($2 AS {column_type})");
            // ORDER BY names the table's column: a bare name would sort by the text output column.
            let end = format!(
                "SELECT {time_column}::pg_catalog.text FROM {table} WHERE {predicate} AND {after}
                  ORDER BY {table}.{time_column} OFFSET $3 - 1 LIMIT 1"
            );
            let ties = format!("SELECT pg_catalog.count(*) FROM (SELECT FROM {table} WHERE {predicate} AND {at} LIMIT $3 + 1) tied");
            let upto = format!(
                "($3::pg_catalog.text IS NULL OR {time_column} < CAST($3 AS {column_type})
                  OR ($5 AND {time_column} = CAST($3 AS {column_type})))"
            );
            let (act, act_ties) = match self.action {
                Action::Delete => (
                    format!("DELETE FROM {table} WHERE {predicate} AND {after} AND {upto}"),
                    format!("DELETE FROM {table} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table} WHERE {predicate} AND {at} LIMIT $3)) AND {predicate} AND {at}"),
                ),
                _ => (
                    format!("UPDATE {table} SET {} WHERE {predicate} AND {after} AND {upto}", set_marker("$4")),
                    format!(
                        "UPDATE {table} SET {} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table} WHERE {predicate} AND {at} LIMIT $3)) AND {predicate} AND {at}",
                        set_marker("$4")
                    ),
                ),
            };
            Ranges { end, ties, act, act_ties }
        });
        let (fetch, mark) = match (&sid, &id, &target.id_type) {
            (Some(sid), Some(id), Some(id_type)) => (
                format!(
                    // ORDER BY names the table's column: a bare name would sort by the text output column.
                    "SELECT {id}::pg_catalog.text, {sid}::pg_catalog.text FROM {table}
                      WHERE {predicate} AND ($2::pg_catalog.text IS NULL OR {id} > CAST($2 AS {id_type}))
                      ORDER BY {table}.{id} LIMIT $3"
                ),
                // Only rows of this batch, and only while their SID is still the one Twilio confirmed.
                format!(
                    "UPDATE {table} AS t SET {} FROM ROWS FROM (pg_catalog.unnest(CAST($2 AS {id_type}[])), pg_catalog.unnest($3::pg_catalog.text[])) AS confirmed(key, sid)
                      WHERE t.{id} = confirmed.key AND t.{sid} = confirmed.sid
                        AND t.{time_column} < {cutoff} AND t.{} IS NULL",
                    set_marker("$4"),
                    marker.clone().unwrap_or_default()
                ),
            ),
            _ => (String::new(), String::new()),
        };
        let age = match target.time_type {
            TimeType::TimestampTz => format!("pg_catalog.now() - pg_catalog.min({time_column})"),
            TimeType::Timestamp => format!("pg_catalog.timezone('UTC', pg_catalog.now()) - pg_catalog.min({time_column})"),
            TimeType::Date => format!(
                "pg_catalog.make_interval(days => pg_catalog.timezone('UTC', pg_catalog.now())::pg_catalog.date - pg_catalog.min({time_column}))"
            ),
        };
        let preview = format!(
            "SELECT pg_catalog.jsonb_build_object('rows', pg_catalog.count(*), 'oldest', pg_catalog.min({time_column}), 'oldest_age', {age})
               FROM {table} WHERE {predicate}"
        );
        let blocks = (!target.partitioned && self.action != Action::TwilioRecording).then(|| {
            let within = "ctid >= $2::pg_catalog.tid AND ctid < $3::pg_catalog.tid";
            match self.action {
                Action::Delete => format!("DELETE FROM {table} WHERE {within} AND {predicate}"),
                _ => format!("UPDATE {table} SET {} WHERE {within} AND {predicate}", set_marker("$4")),
            }
        });
        let count = format!("SELECT pg_catalog.count(*) FROM {table} WHERE {predicate}");
        Statements { batch, ranges, blocks, count, fetch, mark, preview }
    }
}

/// A positive interval of at most `limits::MAX_DAYS` days.
pub fn check_retain(policy: &str, retain: Interval) -> Interval {
    let (positive, within) = spi(Spi::get_two_with_args::<bool, bool>(
        "SELECT $1 > interval '0', $1 <= pg_catalog.make_interval(days => $2)",
        &[retain.into(), limits::MAX_DAYS.into()],
    ));
    if positive != Some(true) || within != Some(true) {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "retention policy \"{policy}\": retain must be a positive interval of at most {} days, got '{}'",
                limits::MAX_DAYS,
                interval_text(retain)
            ),
            None,
        )
    }
    retain
}

fn interval_text(interval: Interval) -> String {
    spi(Spi::get_one_with_args::<String>("SELECT $1::text", &[interval.into()])).unwrap_or_default()
}

fn type_name(oid: pg_sys::Oid) -> String {
    spi(Spi::get_one_with_args::<String>("SELECT pg_catalog.format_type($1, NULL)", &[oid.into()])).unwrap_or_default()
}
