//! Legal holds: conditions over a policy's table whose matching rows no run may touch. Every
//! statement on `retention.holds` is here; they run as the extension owner (the table is
//! closed to everyone else), after the caller's right to alter the policy was checked.
//!
//! A condition is one SQL expression over the table's columns. It is checked when the hold is
//! added, and again whenever a run or preview reads it: Postgres' own parser must read it as
//! exactly one expression (no second statement, no clause around it that could reach past the
//! parentheses it is put in), with no subquery, and it must type-check as a boolean against
//! the table, evaluated with the rights every statement of a run uses (the table owner's).

use std::ffi::CString;

use pgrx::prelude::*;
use pgrx::JsonB;

use super::Policy;
use crate::error::{invalid, raise, spi};
use crate::rights;
use crate::statement::{execute, one};

/// An active hold.
#[derive(Debug, Clone)]
pub struct Hold {
    pub name: String,
    condition: String,
}

/// The rows of a policy's table that its active holds keep: an SQL condition over the table,
/// or None without holds. Each condition on lines of its own, so that a trailing `--` comment
/// ends with its line.
pub fn held_rows(holds: &[Hold]) -> Option<String> {
    if holds.is_empty() {
        return None;
    }
    let any = holds.iter().map(|h| format!("(\n{}\n)", h.condition)).collect::<Vec<_>>().join(" OR ");
    Some(format!("COALESCE({any}, false)"))
}

/// The active holds of a policy, each checked again (see the module's note).
pub fn active(policy: &str) -> Vec<Hold> {
    let holds: Vec<Hold> = rights::as_extension_owner(|| {
        spi(Spi::connect(|client| {
            client
                .select(
                    "SELECT name, condition FROM retention.holds
                      WHERE policy OPERATOR(pg_catalog.=) $1 AND released_at IS NULL ORDER BY id",
                    None,
                    &[policy.into()],
                )?
                .map(|row| Ok(Hold { name: row.get::<String>(1)?.unwrap_or_default(), condition: row.get::<String>(2)?.unwrap_or_default() }))
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        }))
    });
    for hold in &holds {
        if let Err(problem) = one_expression(&hold.condition) {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("retention policy \"{policy}\": hold \"{}\" has a condition no run may use: {problem}", hold.name),
                Some("Release it with retention.release_hold() and add it again with a valid condition.".into()),
            )
        }
    }
    holds
}

/// Adds a hold after checking the caller's right and the condition; the new row as jsonb.
pub fn add(policy_name: &str, hold_name: &str, condition: &str, reason: &str) -> JsonB {
    let policy = Policy::load(policy_name);
    let target = policy.check_target(false, false);
    check_right(&policy);
    if hold_name.trim().is_empty() || reason.trim().is_empty() {
        invalid(format!("retention policy \"{policy_name}\": a hold needs a name and a reason"), Some("For example reason => 'litigation 2026-114: customer 42'."))
    }
    if let Err(problem) = one_expression(condition) {
        invalid(
            format!("retention policy \"{policy_name}\": hold \"{hold_name}\" is refused: {problem}; nothing was stored"),
            Some("A condition is one boolean expression over the table's columns, e.g. \"tenantId\" = 't42' AND \"createdAt\" < '2026-01-01'."),
        )
    }
    type_check(&policy, target.owner, hold_name, condition);
    rights::as_extension_owner(|| {
        let exists = one::<bool>(
            "SELECT EXISTS (SELECT FROM retention.holds WHERE policy OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2 AND released_at IS NULL)",
            || vec![policy_name.into(), hold_name.into()],
        );
        if exists == Some(true) {
            raise(
                PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                format!("retention policy \"{policy_name}\" already has an active hold \"{hold_name}\"; nothing was stored"),
                Some("Release it first, or choose another name.".into()),
            )
        }
        one::<JsonB>(
            "INSERT INTO retention.holds (policy, name, condition, reason, created_by) VALUES ($1, $2, $3, $4, $5)
             RETURNING pg_catalog.to_jsonb(holds.*)",
            || vec![policy_name.into(), hold_name.into(), condition.into(), reason.into(), caller().into()],
        )
        .unwrap_or(JsonB(serde_json::Value::Null))
    })
}

/// Ends an active hold (it stays in the table, released); the released row as jsonb.
pub fn release(policy_name: &str, hold_name: &str) -> JsonB {
    let policy = Policy::load(policy_name);
    // The caller must be a member of the table's owner (or a superuser), as for a policy write.
    policy.check_target(false, false);
    check_right(&policy);
    let released = rights::as_extension_owner(|| {
        one::<JsonB>(
            "WITH released AS (
                 UPDATE retention.holds SET released_by = $3, released_at = pg_catalog.now()
                  WHERE policy OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2 AND released_at IS NULL
                 RETURNING pg_catalog.to_jsonb(holds.*) AS hold)
             SELECT (SELECT hold FROM released)",
            || vec![policy_name.into(), hold_name.into(), caller().into()],
        )
    });
    released.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("retention policy \"{policy_name}\" has no active hold \"{hold_name}\""),
            Some(format!("SELECT name FROM retention.holds WHERE policy = '{}' AND released_at IS NULL lists them.", policy_name.replace('\'', "''"))),
        )
    })
}

/// The session's role, as the history names it.
fn caller() -> String {
    crate::history::store::this_backend().username
}

/// Adding or releasing a hold needs the right to alter the policy: UPDATE on
/// `retention.policies` (or a superuser), and membership in the table's owner, which
/// `check_target` for a write has already required.
fn check_right(policy: &Policy) {
    let allowed = spi(Spi::get_one::<bool>("SELECT pg_catalog.has_table_privilege('retention.policies', 'UPDATE')"));
    if allowed != Some(true) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("retention policy \"{}\": only a role that may alter the policy may add or release its holds", policy.name),
            Some("That is UPDATE on retention.policies and membership in the table's owner, or a superuser.".into()),
        )
    }
}

/// The condition as a boolean over the table, as the table's owner: an unknown column, a wrong
/// type or a missing right is refused here, naming the hold.
fn type_check(policy: &Policy, owner: pg_sys::Oid, hold_name: &str, condition: &str) {
    let probe = format!("SELECT FROM ONLY {} WHERE COALESCE((\n{condition}\n), false) LIMIT 0", policy.qualified_table());
    let checked = crate::engine::xact::in_subtransaction(std::panic::AssertUnwindSafe(|| rights::as_table_owner(owner, || execute(&probe, Vec::new))));
    if let Err(failure) = checked {
        invalid(
            format!(
                "retention policy \"{}\": hold \"{hold_name}\" is refused: its condition does not work on {}: {}; nothing was stored",
                policy.name,
                policy.qualified_table(),
                crate::error::message(&failure)
            ),
            Some("The condition must be a boolean expression over the table's columns, usable by the table's owner."),
        )
    }
}

/// Whether Postgres' parser reads `condition` as exactly one expression with no subquery.
fn one_expression(condition: &str) -> Result<(), String> {
    let sql = CString::new(format!("SELECT {condition}\n")).map_err(|_| "it contains a NUL byte".to_string())?;
    let parsed = crate::engine::xact::in_subtransaction(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the raw parser on a NUL-terminated string; its result lives in the current
        // memory context and is only read below, within this call.
        unsafe { single_expression(pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT)) }
    }));
    match parsed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(problem)) => Err(problem),
        Err(failure) => Err(format!("it is not one SQL expression ({})", crate::error::message(&failure))),
    }
}

/// # Safety
/// `statements` must be the raw parser's result for `SELECT <condition>`.
unsafe fn single_expression(statements: *mut pg_sys::List) -> Result<(), String> {
    // SAFETY: reading the parse tree the parser just made: list cells, node tags and fields of
    // the nodes those tags say they are.
    unsafe {
        if statements.is_null() {
            return Err("it is empty".into());
        }
        if (*statements).length != 1 {
            return Err("it holds more than one statement".into());
        }
        let raw = (*(*statements).elements).ptr_value as *mut pg_sys::RawStmt;
        let select = (*raw).stmt as *mut pg_sys::SelectStmt;
        if (*select).type_ != pg_sys::NodeTag::T_SelectStmt {
            return Err("it is not an expression".into());
        }
        let s = &*select;
        let clauses = !s.fromClause.is_null()
            || !s.whereClause.is_null()
            || !s.groupClause.is_null()
            || !s.havingClause.is_null()
            || !s.windowClause.is_null()
            || !s.sortClause.is_null()
            || !s.limitOffset.is_null()
            || !s.limitCount.is_null()
            || !s.lockingClause.is_null()
            || !s.withClause.is_null()
            || !s.distinctClause.is_null()
            || !s.valuesLists.is_null()
            || !s.intoClause.is_null()
            || s.op != pg_sys::SetOperation::SETOP_NONE;
        if clauses || s.targetList.is_null() || (*s.targetList).length != 1 {
            return Err("it is not a single expression (a comma, or a clause such as FROM, ORDER BY or UNION, follows it)".into());
        }
        let target = (*(*s.targetList).elements).ptr_value as *mut pg_sys::ResTarget;
        if !(*target).name.is_null() {
            return Err("it is not a single expression (a word follows it)".into());
        }
        if has_subquery((*target).val) {
            return Err("it contains a subquery, which could read another table: a hold names rows of its own table only".into());
        }
        Ok(())
    }
}

/// Whether a raw expression tree holds a subquery.
fn has_subquery(node: *mut pg_sys::Node) -> bool {
    /// # Safety
    /// `node` is null or a node of a raw parse tree, as `raw_expression_tree_walker` hands it.
    #[pg_guard]
    unsafe extern "C-unwind" fn walker(node: *mut pg_sys::Node, context: *mut std::ffi::c_void) -> bool {
        if node.is_null() {
            return false;
        }
        // SAFETY: a node of the tree being walked; the tag is its first field.
        unsafe {
            if (*node).type_ == pg_sys::NodeTag::T_SubLink || (*node).type_ == pg_sys::NodeTag::T_RangeSubselect {
                return true;
            }
            pg_sys::raw_expression_tree_walker(node, Some(walker), context)
        }
    }
    // SAFETY: walks a raw parse tree with a walker that only reads node tags.
    unsafe { walker(node, std::ptr::null_mut()) }
}
