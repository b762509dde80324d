//! Legal holds: conditions over a table whose matching rows no run may touch. Every statement
//! on `retention.holds` is here; they run as the extension owner (the table is closed to
//! everyone else), after the caller's right to alter the policy was checked.
//!
//! A hold belongs to the table (`target`, a `regclass`: a restore maps it to the restored
//! table), not to the policy it was added through: every policy on the table, under any name,
//! keeps its rows. Its condition is one SQL expression over the table's columns, parsed once,
//! when the hold is added, in the caller's session, the way PostgreSQL parses a CHECK
//! constraint (no subquery, aggregate or set-returning function), and stored as PostgreSQL's
//! own deparse of that tree made in the fixed settings (`rights::FIXED_SETTINGS`): every
//! literal typed, every name outside `pg_catalog` schema-qualified. A run reads that text in
//! the same fixed settings, so no session setting can change what it keeps. The text is checked
//! again whenever a run or preview reads it (exactly one expression, no subquery), and the
//! condition is tried as the table's owner when added.

use std::ffi::{CStr, CString};
use std::panic::AssertUnwindSafe;

use pgrx::prelude::*;
use pgrx::JsonB;

use super::Policy;
use crate::error::{invalid, raise, spi};
use crate::engine::xact::in_subtransaction;
use crate::rights;
use crate::statement::{execute, one};

/// An active hold.
#[derive(Debug, Clone)]
pub struct Hold {
    pub name: String,
    /// The stored deparse (`expression`): what a run evaluates.
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

/// The active holds on a policy's table (`relid`), each checked again (see the module's note).
pub fn active(policy: &str, relid: pg_sys::Oid) -> Vec<Hold> {
    let holds: Vec<Hold> = rights::as_extension_owner(|| {
        spi(Spi::connect(|client| {
            client
                .select(
                    "SELECT name, expression FROM retention.holds
                      WHERE target::pg_catalog.oid OPERATOR(pg_catalog.=) $1 AND released_at IS NULL ORDER BY id",
                    None,
                    &[relid.into()],
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

/// Adds a hold on the policy's table after checking the caller's right and the condition;
/// the new row as jsonb.
pub fn add(policy_name: &str, hold_name: &str, condition: &str, reason: &str) -> JsonB {
    let policy = Policy::load(policy_name);
    let target = policy.check_target(false, false);
    check_right(&policy);
    let caller = caller();
    if hold_name.trim().is_empty() || reason.trim().is_empty() {
        invalid(format!("retention policy \"{policy_name}\": a hold needs a name and a reason"), Some("For example reason => 'litigation 2026-114: customer 42'."))
    }
    if let Err(problem) = one_expression(condition) {
        invalid(
            format!("retention policy \"{policy_name}\": hold \"{hold_name}\" is refused: {problem}; nothing was stored"),
            Some("A condition is one boolean expression over the table's columns, e.g. \"tenantId\" = 't42' AND \"createdAt\" < '2026-01-01'."),
        )
    }
    let expression = parse(&policy, target.relid, condition).unwrap_or_else(|problem| {
        invalid(
            format!(
                "retention policy \"{policy_name}\": hold \"{hold_name}\" is refused: its condition does not work on {}: {problem}; nothing was stored",
                policy.qualified_table()
            ),
            Some("The condition must be a boolean expression over the table's columns, usable by the table's owner."),
        )
    });
    type_check(&policy, target.owner, hold_name, &expression);
    rights::as_extension_owner(|| {
        let exists = one::<bool>(
            "SELECT EXISTS (SELECT FROM retention.holds
                             WHERE target::pg_catalog.oid OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2 AND released_at IS NULL)",
            || vec![target.relid.into(), hold_name.into()],
        );
        if exists == Some(true) {
            raise(
                PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                format!("table {} already has an active hold \"{hold_name}\"; nothing was stored", policy.qualified_table()),
                Some("Release it first, or choose another name.".into()),
            )
        }
        one::<JsonB>(
            "INSERT INTO retention.holds (target, policy, name, condition, expression, reason, created_by)
             VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7)
             RETURNING pg_catalog.to_jsonb(holds.*)",
            || vec![
                target.relid.into(),
                policy_name.into(),
                hold_name.into(),
                condition.into(),
                expression.as_str().into(),
                reason.into(),
                caller.as_str().into(),
            ],
        )
        .unwrap_or(JsonB(serde_json::Value::Null))
    })
}

/// Ends an active hold on the policy's table (it stays in `retention.holds`, released); the
/// released row as jsonb.
pub fn release(policy_name: &str, hold_name: &str) -> JsonB {
    let policy = Policy::load(policy_name);
    // The caller must be a member of the table's owner (or a superuser), as for a policy write.
    let target = policy.check_target(false, false);
    check_right(&policy);
    let caller = caller();
    let released = rights::as_extension_owner(|| {
        one::<JsonB>(
            "WITH released AS (
                 UPDATE retention.holds SET released_by = $3, released_at = pg_catalog.now()
                  WHERE target::pg_catalog.oid OPERATOR(pg_catalog.=) $1 AND name OPERATOR(pg_catalog.=) $2 AND released_at IS NULL
                 RETURNING pg_catalog.to_jsonb(holds.*) AS hold)
             SELECT (SELECT hold FROM released)",
            || vec![target.relid.into(), hold_name.into(), caller.as_str().into()],
        )
    });
    released.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("table {} of retention policy \"{policy_name}\" has no active hold \"{hold_name}\"", policy.qualified_table()),
            Some("SELECT target, name FROM retention.holds WHERE released_at IS NULL lists them.".into()),
        )
    })
}

/// The session's role, read before any switch to the extension owner: who added or released a hold.
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

/// The stored expression tried as the table's owner, as a run uses it: a missing right (to
/// call a function, say) is refused here, naming the hold.
fn type_check(policy: &Policy, owner: pg_sys::Oid, hold_name: &str, expression: &str) {
    let probe = format!("SELECT FROM ONLY {} WHERE COALESCE((\n{expression}\n), false) LIMIT 0", policy.qualified_table());
    let checked = in_subtransaction(AssertUnwindSafe(|| rights::as_table_owner(owner, || execute(&probe, Vec::new))));
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
    let parsed = in_subtransaction(AssertUnwindSafe(|| {
        // SAFETY: the raw parser on a NUL-terminated string; its result lives in the current
        // memory context and is only read below, within this call.
        unsafe { single_expression(pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT)).map(|_| ()) }
    }));
    match parsed {
        Ok(result) => result,
        Err(failure) => Err(format!("it is not one SQL expression ({})", crate::error::message(&failure))),
    }
}

/// The condition parsed over the policy's table as a CHECK constraint is (in the caller's
/// session: its literals take their meaning now), coerced to boolean, and deparsed in the fixed
/// settings: the text every run reads.
fn parse(policy: &Policy, relid: pg_sys::Oid, condition: &str) -> Result<String, String> {
    let sql = CString::new(format!("SELECT {condition}\n")).map_err(|_| "it contains a NUL byte".to_string())?;
    let alias = CString::new(policy.table_name.as_str()).map_err(|_| "the table name contains a NUL byte".to_string())?;
    let parsed = in_subtransaction(AssertUnwindSafe(|| {
        // SAFETY: the raw parser on a NUL-terminated string, then the parse-analysis calls
        // PostgreSQL makes for a CHECK constraint (cookConstraint), on a table opened (and
        // locked ACCESS SHARE) for the duration; every tree lives in the current memory context.
        unsafe {
            let raw = single_expression(pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT))?;
            let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
            let relation = pg_sys::table_open(relid, lock);
            let state = pg_sys::make_parsestate(std::ptr::null_mut());
            (*state).p_sourcetext = sql.as_ptr();
            let item = pg_sys::addRangeTableEntryForRelation(state, relation, lock, std::ptr::null_mut(), false, true);
            pg_sys::addNSItemToQuery(state, item, true, true, true);
            let expression = pg_sys::transformExpr(state, raw, pg_sys::ParseExprKind::EXPR_KIND_CHECK_CONSTRAINT);
            let expression = pg_sys::coerce_to_boolean(state, expression, c"a hold's condition".as_ptr());
            pg_sys::assign_expr_collations(state, expression);
            pg_sys::table_close(relation, pg_sys::NoLock as pg_sys::LOCKMODE);
            let context = pg_sys::deparse_context_for(alias.as_ptr(), relid);
            let text = rights::in_fixed_settings(|| pg_sys::deparse_expression(expression, context, false, false));
            Ok(CStr::from_ptr(text).to_string_lossy().into_owned())
        }
    }));
    match parsed {
        Ok(result) => result,
        Err(failure) => Err(crate::error::message(&failure)),
    }
}

/// The expression of `SELECT <condition>`, when the parser read exactly that.
///
/// # Safety
/// `statements` must be the raw parser's result for `SELECT <condition>`.
unsafe fn single_expression(statements: *mut pg_sys::List) -> Result<*mut pg_sys::Node, String> {
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
        Ok((*target).val)
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
