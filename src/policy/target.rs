//! What a policy names, checked against the live catalog: the table, its columns and their
//! types, and whether an index leads with the time column.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::{Action, Policy};
use crate::citus::{self, CitusTable};
use crate::error::{invalid, raise, spi};

/// What a policy's table turned out to be, checked against the live catalog.
#[derive(Clone)]
pub struct Target {
    pub relid: pg_sys::Oid,
    /// Every statement on the table runs as this role.
    pub owner: pg_sys::Oid,
    /// Its rows lie in other relations too (a partitioned table, or a legacy inheritance
    /// parent and its children): its own blocks do not hold them all, so no block-range batches.
    pub has_children: bool,
    pub time_type: TimeType,
    /// The soft-delete marker column's type (marking actions only).
    pub marker_type: Option<TimeType>,
    /// An index leads with the time column: batches can then be ranges of it.
    pub time_indexed: bool,
    /// SQL type of the key column (twilio_recording only), from `format_type`.
    pub id_type: Option<String>,
    /// How Citus holds the table, if it does: then its relation here holds no rows itself.
    pub citus: Option<CitusTable>,
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

    /// The type's name in SQL, schema-qualified.
    pub fn sql_type(self) -> &'static str {
        match self {
            TimeType::Timestamp => "pg_catalog.timestamp",
            TimeType::TimestampTz => "pg_catalog.timestamptz",
            TimeType::Date => "pg_catalog.date",
        }
    }

    /// A timestamptz expression in the column's own type, as `cutoff_expr` converts the cutoff.
    pub fn from_timestamptz(self, expr: &str) -> String {
        match self {
            TimeType::TimestampTz => expr.to_string(),
            TimeType::Timestamp => format!("pg_catalog.timezone('UTC', {expr})"),
            TimeType::Date => format!("pg_catalog.timezone('UTC', {expr})::pg_catalog.date"),
        }
    }

    /// The cutoff (parameter `$1`, a timestamptz) in the column's own type, so that the
    /// comparison never depends on the session's TimeZone and can use an index.
    pub fn cutoff_expr(self) -> &'static str {
        match self {
            TimeType::TimestampTz => "$1",
            TimeType::Timestamp => "pg_catalog.timezone('UTC', $1)",
            TimeType::Date => "pg_catalog.timezone('UTC', $1)::pg_catalog.date",
        }
    }
}

impl Policy {
    pub fn qualified_table(&self) -> String {
        pgrx::spi::quote_qualified_identifier(&self.table_schema, &self.table_name)
    }

    /// Checks that the table and columns the policy names exist and have usable types.
    /// `at_run` adds a hint for a run (point the policy elsewhere) rather than for a write.
    /// `warn_index` warns when no index leads with the time column (on writes and runs, not previews).
    pub fn check_target(&self, at_run: bool, warn_index: bool) -> Target {
        let table = self.qualified_table();
        let relation = spi(Spi::connect(|client| -> SpiResult<Option<(pg_sys::Oid, String, pg_sys::Oid, bool)>> {
            let rows = client.select(
                "SELECT c.oid, c.relkind::pg_catalog.text, c.relowner, c.relhassubclass FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                  WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2",
                Some(1),
                &[self.table_schema.as_str().into(), self.table_name.as_str().into()],
            )?;
            if rows.is_empty() {
                return Ok(None);
            }
            let row = rows.first();
            let oid = |n| -> SpiResult<pg_sys::Oid> { Ok(row.get::<pg_sys::Oid>(n)?.unwrap_or(pg_sys::InvalidOid)) };
            Ok(Some((oid(1)?, row.get::<String>(2)?.unwrap_or_default(), oid(3)?, row.get::<bool>(4)?.unwrap_or(true))))
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
        let Some((relid, relkind, owner, has_subclass)) = relation else {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("retention policy \"{}\": table {table} does not exist", self.name),
                repoint_hint().or_else(|| Some("Create the table first, or name an existing one in table_schema and table_name.".into())),
            )
        };
        self.check_allowed(relid, &table, owner, at_run);
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
        let mut marker_type = None;
        if self.action.marks_rows() {
            let Some(column) = &self.soft_delete_column else {
                invalid(
                    format!("retention policy \"{}\": action {} needs soft_delete_column", self.name, self.action.as_str()),
                    Some("Name the timestamp column that marks a row deleted, e.g. soft_delete_column => 'deleted_at'."),
                )
            };
            let oid = self.column_type(relid, &table, column, repoint_hint());
            marker_type = TimeType::from_oid(oid);
            if !matches!(marker_type, Some(TimeType::Timestamp | TimeType::TimestampTz)) {
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
                let oid = self.column_type(relid, &table, reason, repoint_hint());
                if ![pg_sys::TEXTOID, pg_sys::VARCHAROID].contains(&oid) {
                    raise(
                        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                        format!(
                            "retention policy \"{}\": reason_column \"{reason}\" of table {table} has type {}, but must be text or varchar",
                            self.name,
                            type_name(oid)
                        ),
                        None,
                    )
                }
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
            // A recording SID and an account SID are text, compared as text.
            let text_column = |field: &str, column: &str| {
                let oid = self.column_type(relid, &table, column, repoint_hint());
                if ![pg_sys::TEXTOID, pg_sys::VARCHAROID].contains(&oid) {
                    raise(
                        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                        format!(
                            "retention policy \"{}\": {field} \"{column}\" of table {table} has type {}, but must be text or varchar",
                            self.name,
                            type_name(oid)
                        ),
                        None,
                    )
                }
            };
            text_column("sid_column", &needed(&self.sid_column, "sid_column", "twilio_recording_sid"));
            if let Some(account_column) = &self.account_column {
                text_column("account_column", account_column);
            }
            for key_column in &self.s3_key_columns {
                text_column("s3_key_columns", key_column);
            }
            let id_column = needed(&self.id_column, "id_column", "id");
            let oid = self.column_type(relid, &table, &id_column, repoint_hint());
            // Keys page the batches and pick the rows to mark: a NULL key could be neither.
            let not_null = spi(Spi::get_one_with_args::<bool>(
                "SELECT attnotnull FROM pg_catalog.pg_attribute
                  WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attname OPERATOR(pg_catalog.=) $2",
                &[relid.into(), id_column.as_str().into()],
            ));
            if not_null != Some(true) {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!(
                        "retention policy \"{}\": id_column \"{id_column}\" of table {table} can be NULL, but the key of a recordings policy must be NOT NULL",
                        self.name
                    ),
                    Some(format!("Name the table's primary key, or: ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL;", pgrx::spi::quote_identifier(&id_column))),
                )
            }
            id_type = Some(type_name(oid));
        }
        Target { relid, owner, has_children: relkind == "p" || has_subclass, time_type, marker_type, time_indexed, id_type, citus: citus::table(relid) }
    }

    /// Nobody, superusers included, may target a system catalog, an `information_schema` or
    /// `pg_toast` relation, or the extension's own schema. A policy being written by a role
    /// that is not a superuser must name a table whose owner that role is a member of.
    fn check_allowed(&self, relid: pg_sys::Oid, table: &str, owner: pg_sys::Oid, at_run: bool) {
        let schema = self.table_schema.as_str();
        // SAFETY: compares the oid with the system catalogs' oids; no side effects.
        let catalog = unsafe { pg_sys::IsCatalogRelationOid(relid) };
        if catalog || is_protected_schema(schema) {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("retention policy \"{}\": {table} is a system or pg_retention table, which no policy may target", self.name),
                Some("Policies may name application tables only: not pg_catalog, information_schema, pg_toast or the retention schema.".into()),
            )
        }
        // SAFETY: plain reads of this backend's user and the role catalog.
        let (user, allowed) = unsafe {
            let user = pg_sys::GetUserId();
            (user, pg_sys::superuser_arg(user) || pg_sys::is_member_of_role(user, owner))
        };
        if !at_run && !allowed {
            let role = role_name;
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "retention policy \"{}\": role \"{}\" may not target {table}, which is owned by \"{}\"",
                    self.name,
                    role(user),
                    role(owner)
                ),
                Some("A policy runs as its table's owner: only that owner, a member of it, or a superuser may point a policy at the table.".into()),
            )
        }
    }

    /// A policy being altered (any column: a rename, `enabled`, `retain`, `archive_schema`) or
    /// dropped: a role that is not a superuser must be a member of the owner of the table the
    /// policy names now, as it must be to point a policy at that table. A policy whose table is
    /// gone may be changed by whoever may write policies.
    pub fn check_may_change(&self, verb: &str) {
        let owner = spi(Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT (SELECT c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                      WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2)",
            &[self.table_schema.as_str().into(), self.table_name.as_str().into()],
        ));
        let Some(owner) = owner else { return };
        // SAFETY: plain reads of this backend's user and the role catalog.
        let (user, allowed) = unsafe {
            let user = pg_sys::GetUserId();
            (user, pg_sys::superuser_arg(user) || pg_sys::is_member_of_role(user, owner))
        };
        if !allowed {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "role \"{}\" may not {verb} retention policy \"{}\": its table {} is owned by \"{}\"",
                    role_name(user),
                    self.name,
                    self.qualified_table(),
                    role_name(owner)
                ),
                Some("Only the table's owner, a member of it, or a superuser may change or drop a policy on the table.".into()),
            )
        }
    }

    fn time_column_indexed(&self, relid: pg_sys::Oid) -> bool {
        spi(Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i
                              JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
                             WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2 AND i.indisvalid)",
            &[relid.into(), self.time_column.as_str().into()],
        ))
        .unwrap_or(false)
    }

    /// Without an index led by the time column, every run reads the whole table: say so.
    fn warn_without_index(&self, table: &str) {
        let column = pgrx::spi::quote_identifier(&self.time_column);
        crate::error::report(
            PgLogLevel::WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            format!("retention policy \"{}\": column {column} of table {table} has no index, so each run reads the whole table", self.name),
            Some(format!("CREATE INDEX ON {table} ({column});")),
        );
    }

    fn column_type(&self, relid: pg_sys::Oid, table: &str, column: &str, hint: Option<String>) -> pg_sys::Oid {
        let oid = spi(Spi::connect(|client| -> SpiResult<Option<pg_sys::Oid>> {
            let rows = client.select(
                "SELECT atttypid FROM pg_catalog.pg_attribute
                  WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attname OPERATOR(pg_catalog.=) $2 AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped",
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
}

fn role_name(oid: pg_sys::Oid) -> String {
    spi(Spi::get_one_with_args::<String>("SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text", &[oid.into()])).unwrap_or_default()
}

fn type_name(oid: pg_sys::Oid) -> String {
    spi(Spi::get_one_with_args::<String>("SELECT pg_catalog.format_type($1, NULL)", &[oid.into()])).unwrap_or_default()
}

/// Schemas no policy may target: the system's, and the extension's own.
pub(super) fn is_protected_schema(schema: &str) -> bool {
    matches!(schema, "pg_catalog" | "information_schema" | "retention") || schema.starts_with("pg_toast")
}

#[cfg(test)]
mod tests {
    use super::is_protected_schema;

    #[test]
    fn system_and_extension_schemas_are_protected() {
        for schema in ["pg_catalog", "information_schema", "retention", "pg_toast", "pg_toast_temp_1"] {
            assert!(is_protected_schema(schema), "{schema}");
        }
        for schema in ["public", "app", "Retention", "pg_catalogue_copy"] {
            assert!(!is_protected_schema(schema), "{schema}");
        }
    }
}
