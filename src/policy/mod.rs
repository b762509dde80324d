//! The policy catalog: a policy read from a row of `retention.policies` (by a run, or by the
//! validation trigger), its typed rule and action, and the checks of a policy being written.
//! `target` checks what a policy names against the live catalog.

use std::str::FromStr;

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use crate::error::{invalid, raise, spi};
use crate::limits;

pub mod hiding;
pub mod holds;
mod restore;
mod row;
mod target;

pub use restore::replace_pristine_presets;
pub use row::{ColumnValue, PolicyRow};
pub use target::{Target, TimeType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Delete when the time column is before now.
    ExpiresAt,
    /// Delete when the time column is older than `retain`.
    OlderThan,
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(text: &str) -> Result<Rule, String> {
        match text {
            "expires_at" => Ok(Rule::ExpiresAt),
            "older_than" => Ok(Rule::OlderThan),
            other => Err(format!("rule must be 'expires_at' or 'older_than', not '{other}'")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delete,
    SoftDelete,
    /// Delete the media at Twilio, then soft-delete the row.
    TwilioRecording,
}

impl FromStr for Action {
    type Err = String;

    fn from_str(text: &str) -> Result<Action, String> {
        match text {
            "delete" => Ok(Action::Delete),
            "soft_delete" => Ok(Action::SoftDelete),
            "twilio_recording" => Ok(Action::TwilioRecording),
            other => Err(format!("action must be 'delete', 'soft_delete' or 'twilio_recording', not '{other}'")),
        }
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Delete => "delete",
            Action::SoftDelete => "soft_delete",
            Action::TwilioRecording => "twilio_recording",
        }
    }

    /// Actions that keep the row and mark it instead.
    pub fn marks_rows(self) -> bool {
        matches!(self, Action::SoftDelete | Action::TwilioRecording)
    }
}

/// What a delete policy does with a partition whose bounds prove every row past the cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiredPartitions {
    /// Detach it from its parent and drop it.
    Drop,
    /// Detach it and keep it as a plain table (moved to `archive_schema` when one is named).
    Detach,
    /// Delete its rows in batches like any other partition's.
    Rows,
}

impl FromStr for ExpiredPartitions {
    type Err = String;

    fn from_str(text: &str) -> Result<ExpiredPartitions, String> {
        match text {
            "drop" => Ok(ExpiredPartitions::Drop),
            "detach" => Ok(ExpiredPartitions::Detach),
            "rows" => Ok(ExpiredPartitions::Rows),
            other => Err(format!("expired_partitions must be 'drop', 'detach' or 'rows', not '{other}'")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// The catalog row's identity: the key of the policy's lock.
    pub id: i32,
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
    /// The pace limit of a run, in rows a second; None: as fast as it goes.
    pub max_rows_per_second: Option<i32>,
    /// A disabled policy is skipped by every trigger; preview still works.
    pub enabled: bool,
    pub expired_partitions: ExpiredPartitions,
    /// Where `detach` moves a detached partition; None: it stays in its schema.
    pub archive_schema: Option<String>,
    /// Recordings: what happens to a row with no valid SID.
    pub missing_sid: MissingSid,
    /// Recordings: the column holding each row's Twilio account (a subaccount's SID); None:
    /// every recording is the credentials' own account's.
    pub account_column: Option<String>,
    /// Recordings: each recording's transcriptions are listed and deleted before it.
    pub transcriptions: bool,
    /// Recordings: the store of the Twilio recording (`retention.stores`).
    pub twilio_store: String,
    /// Recordings: the store of each row's S3 objects, named in `s3_key_columns`.
    pub s3_store: Option<String>,
    pub s3_key_columns: Vec<String>,
    pub s3_versions: crate::s3::Versions,
    /// Rows past the cutoff hidden from ordinary queries by row-level security (`hiding`).
    pub hide_expired: bool,
}

/// What a recordings policy does with a row past the cutoff that has no valid recording SID
/// (NULL, or not `RE` + 32 hex digits): there is no media to delete at Twilio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingSid {
    /// Leave it unmarked, counted `skipped` at every run (the behaviour before 0.6.0).
    Skip,
    /// Soft-delete it without a Twilio call, with the reason `no_recording_sid`.
    Mark,
}

impl FromStr for MissingSid {
    type Err = String;

    fn from_str(text: &str) -> Result<MissingSid, String> {
        match text {
            "skip" => Ok(MissingSid::Skip),
            "mark" => Ok(MissingSid::Mark),
            other => Err(format!("missing_sid must be 'skip' or 'mark', not '{other}'")),
        }
    }
}

impl Policy {
    /// Reads a policy from its row. Missing required values and an unknown rule or action
    /// are errors that name the policy and the column: never a default.
    pub fn from_row(row: &impl PolicyRow) -> Policy {
        fn get<T: ColumnValue>(row: &impl PolicyRow, column: &str) -> Option<T> {
            row.column(column).unwrap_or_else(|e| {
                raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("pg_retention: reading column {column} of a policy: {e}"), None)
            })
        }
        let required = |column: &str| -> String {
            get(row, column).unwrap_or_else(|| {
                raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{column} must not be NULL"), None)
            })
        };
        let name = required("name");
        let rule = required("rule").parse::<Rule>().unwrap_or_else(|problem| {
            invalid(
                format!("retention policy \"{name}\": {problem}"),
                Some("expires_at deletes rows whose time column is before now; older_than deletes rows older than retain."),
            )
        });
        let action = required("action")
            .parse::<Action>()
            .unwrap_or_else(|problem| invalid(format!("retention policy \"{name}\": {problem}"), None));
        // Added in 0.5.0: absent while an upgrade script from an older release runs.
        let expired_partitions = row
            .column::<String>("expired_partitions")
            .unwrap_or(None)
            .map(|text| {
                text.parse::<ExpiredPartitions>().unwrap_or_else(|problem| {
                    invalid(
                        format!("retention policy \"{name}\": {problem}"),
                        Some("drop removes a wholly expired partition, detach keeps it as a table of its own, rows deletes its rows one batch at a time."),
                    )
                })
            })
            .unwrap_or(ExpiredPartitions::Drop);
        // Added in 0.6.0: absent while an upgrade script from an older release runs.
        let missing_sid = row
            .column::<String>("missing_sid")
            .unwrap_or(None)
            .map(|text| {
                text.parse::<MissingSid>().unwrap_or_else(|problem| {
                    invalid(
                        format!("retention policy \"{name}\": {problem}"),
                        Some("skip leaves a recording row without a valid SID as it is; mark soft-deletes it without a Twilio call."),
                    )
                })
            })
            .unwrap_or(MissingSid::Skip);
        Policy {
            id: get(row, "id").unwrap_or_default(),
            table_schema: required("table_schema"),
            table_name: required("table_name"),
            time_column: required("time_column"),
            rule,
            retain: get(row, "retain"),
            action,
            soft_delete_column: get(row, "soft_delete_column"),
            reason_column: get(row, "reason_column"),
            deletion_reason: get(row, "deletion_reason").unwrap_or_default(),
            sid_column: get(row, "sid_column"),
            id_column: get(row, "id_column"),
            batch_size: get(row, "batch_size").unwrap_or_else(|| {
                raise(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, "batch_size must not be NULL".into(), None)
            }),
            // Added in 0.4.0: absent while an upgrade script from an older release runs.
            max_rows_per_second: row.column("max_rows_per_second").unwrap_or(None),
            enabled: get(row, "enabled").unwrap_or(false),
            expired_partitions,
            archive_schema: row.column("archive_schema").unwrap_or(None),
            missing_sid,
            // Added in 0.8.0: absent while an upgrade script from an older release runs.
            account_column: row.column("account_column").unwrap_or(None),
            // Added in 0.9.0: absent while an upgrade script from an older release runs.
            transcriptions: row.column("transcriptions").unwrap_or(None).unwrap_or(false),
            twilio_store: row.column("twilio_store").unwrap_or(None).unwrap_or_else(|| crate::store::DEFAULT_TWILIO.to_string()),
            s3_store: row.column("s3_store").unwrap_or(None),
            s3_key_columns: row.text_array("s3_key_columns").unwrap_or_default(),
            s3_versions: row.column::<String>("s3_versions").unwrap_or(None).map_or(crate::s3::Versions::All, |text| {
                text.parse().unwrap_or_else(|e: String| invalid(format!("retention policy \"{name}\": {e}"), None))
            }),
            // Added in 0.10.0.
            hide_expired: row.column("hide_expired").unwrap_or(None).unwrap_or(false),
            name,
        }
    }

    /// Loads a policy by name, or reports that there is none.
    pub fn load(name: &str) -> Policy {
        crate::version::check_installed_sql();
        let found = spi(Spi::connect(|client| {
            let rows = client.select("SELECT * FROM retention.policies WHERE name OPERATOR(pg_catalog.=) $1", Some(1), &[name.into()])?;
            Ok::<_, pgrx::spi::Error>(rows.into_iter().next().map(|row| Policy::from_row(&row)))
        }));
        found.unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("retention policy \"{name}\" does not exist"),
                Some("SELECT name FROM retention.policies lists the policies; retention.add_policy() adds one.".into()),
            )
        })
    }

    /// A preset still pointing at its own table, in a database that does not have that table
    /// (the Prisma tables in the voice engine's database, say): the worker skips it.
    pub fn is_preset_without_its_table(&self) -> bool {
        const PRESETS: [(&str, &str); 3] = [("expired_traces", "ConversationTrace"), ("old_agent_usage", "AgentUsage"), ("old_recordings", "voice_recordings")];
        let own_table = PRESETS.iter().any(|(name, table)| self.name == *name && self.table_schema == "public" && self.table_name == *table);
        own_table
            && spi(Spi::get_one_with_args::<bool>("SELECT pg_catalog.to_regclass($1) IS NULL", &[self.qualified_table().as_str().into()])) == Some(true)
    }

    /// The value for the reason column, when the policy marks rows and names one. The batch
    /// statements take it always (unused, and NULL, otherwise).
    pub fn reason(&self) -> Option<&str> {
        (self.action.marks_rows() && self.reason_column.is_some()).then_some(self.deletion_reason.as_str())
    }

    /// Checks every field of a policy being written. The table and columns must exist now when
    /// `target_changed` (always on insert): so a policy whose table is gone can still be disabled.
    pub fn check_for_write(&self, target_changed: bool) {
        if self.name.trim().is_empty() {
            invalid("retention policy name must not be empty".into(), None);
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
        if self.max_rows_per_second.is_some_and(|rate| rate <= 0) {
            invalid(
                format!("retention policy \"{}\": max_rows_per_second must be a positive number of rows a second", self.name),
                Some("Leave it NULL for no limit (alter_policy(..., max_rows_per_second => 0) lifts one)."),
            );
        }
        if self.action != Action::TwilioRecording {
            let recordings_only = [
                ("missing_sid => 'mark'", self.missing_sid == MissingSid::Mark),
                ("account_column", self.account_column.is_some()),
                ("transcriptions", self.transcriptions),
                ("s3_store", self.s3_store.is_some() || !self.s3_key_columns.is_empty()),
                ("twilio_store", self.twilio_store != crate::store::DEFAULT_TWILIO),
            ];
            if let Some((option, _)) = recordings_only.iter().find(|(_, set)| *set) {
                invalid(
                    format!("retention policy \"{}\": {option} is for twilio_recording policies", self.name),
                    Some("Other actions never call Twilio or a store; leave it at its default."),
                );
            }
        } else {
            crate::store::check_policy(self);
        }
        if let Some(schema) = &self.archive_schema {
            let exists = spi(Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) $1)",
                &[schema.as_str().into()],
            ));
            if exists != Some(true) || target::is_protected_schema(schema) {
                invalid(
                    format!("retention policy \"{}\": archive_schema \"{schema}\" does not exist or is a system schema", self.name),
                    Some("Create it first (CREATE SCHEMA ...), and grant CREATE on it to the table's owner."),
                );
            }
        }
        if target_changed {
            self.check_target(false, true);
        }
    }

    /// The interval a run keeps rows for: `given` (the `days` of a cleanup function, or
    /// `run_policy`'s argument) or the policy's own; None for rule expires_at.
    pub fn retain_for_run(&self, given: Option<Interval>) -> Option<Interval> {
        match (self.rule, given) {
            (Rule::ExpiresAt, Some(_)) => invalid(
                format!("retention policy \"{}\" uses rule expires_at, which takes no retain interval", self.name),
                Some("Rows go when their time column is before now; call it without an interval."),
            ),
            (Rule::ExpiresAt, None) => None,
            (Rule::OlderThan, given) => {
                let retain = given
                    .or(self.retain)
                    .unwrap_or_else(|| invalid(format!("retention policy \"{}\" has no retain interval", self.name), None));
                Some(check_retain(&self.name, retain))
            }
        }
    }
}

/// A run's cutoff: now for rule expires_at, now minus `retain` for older_than. Fixed once per
/// run; every batch compares against this value.
pub fn cutoff(retain: Option<Interval>) -> TimestampWithTimeZone {
    let cutoff = match retain {
        None => spi(Spi::get_one::<TimestampWithTimeZone>("SELECT pg_catalog.now()")),
        // Subtract in UTC so that a DST change in the session's TimeZone cannot move the cutoff.
        Some(retain) => spi(Spi::get_one_with_args::<TimestampWithTimeZone>(
            "SELECT pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', pg_catalog.now()) OPERATOR(pg_catalog.-) $1)",
            &[retain.into()],
        )),
    };
    cutoff.unwrap_or_else(|| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "pg_retention: no cutoff".into(), None))
}

/// A positive interval of at most `limits::MAX_DAYS` days.
fn check_retain(policy: &str, retain: Interval) -> Interval {
    let (positive, within) = spi(Spi::get_two_with_args::<bool, bool>(
        "SELECT $1 OPERATOR(pg_catalog.>) interval '0', $1 OPERATOR(pg_catalog.<=) pg_catalog.make_interval(days => $2)",
        &[retain.into(), limits::MAX_DAYS.into()],
    ));
    let shown = || spi(Spi::get_one_with_args::<String>("SELECT $1::pg_catalog.text", &[retain.into()])).unwrap_or_default();
    if positive != Some(true) || within != Some(true) {
        invalid(
            format!("retention policy \"{policy}\": retain must be a positive interval of at most {} days, got '{}'", limits::MAX_DAYS, shown()),
            None,
        )
    }
    // An interval can compare greater than zero and still reach into the future ('-1 year
    // 361 days'): the cutoff itself, computed as a run computes it, must be before now.
    let past = spi(Spi::get_one_with_args::<bool>(
        "SELECT $1 OPERATOR(pg_catalog.<) pg_catalog.now()",
        &[cutoff(Some(retain)).into()],
    ));
    if past != Some(true) {
        invalid(
            format!("retention policy \"{policy}\": retain must put the cutoff before now, but now minus '{}' is in the future", shown()),
            Some("Write the interval with parts of one sign, such as interval '30 days'."),
        )
    }
    retain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_and_action_parse_or_say_what_is_allowed() {
        assert_eq!("expires_at".parse::<Rule>(), Ok(Rule::ExpiresAt));
        assert_eq!("older_than".parse::<Rule>(), Ok(Rule::OlderThan));
        assert_eq!("sometimes".parse::<Rule>().unwrap_err(), "rule must be 'expires_at' or 'older_than', not 'sometimes'");
        for action in [Action::Delete, Action::SoftDelete, Action::TwilioRecording] {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        // An unknown action is an error, never a silent `delete`.
        assert!("truncate".parse::<Action>().unwrap_err().ends_with("not 'truncate'"));
        assert!("".parse::<Action>().is_err());
        assert!("DELETE".parse::<Action>().is_err());
        assert_eq!("drop".parse::<ExpiredPartitions>(), Ok(ExpiredPartitions::Drop));
        assert_eq!("detach".parse::<ExpiredPartitions>(), Ok(ExpiredPartitions::Detach));
        assert_eq!("rows".parse::<ExpiredPartitions>(), Ok(ExpiredPartitions::Rows));
        assert!("truncate".parse::<ExpiredPartitions>().unwrap_err().ends_with("not 'truncate'"));
    }
}
