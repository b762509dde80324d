//! `hide_expired`: row-level security that hides from ordinary queries the rows the policy would
//! delete, from the moment they expire, whatever the client. Three RESTRICTIVE policies on the
//! table (SELECT, UPDATE, DELETE: an INSERT of an already expired row still goes in), a
//! PERMISSIVE `true` when the table had none (a restrictive policy alone hides everything) or for
//! its owner when it was not forced, RLS enabled and forced (the application usually owns its
//! table). The run, which acts as the owner, sees every row through
//! `retention_rls.run_sees_all()`, true only while pg_retention's own code acts on the table
//! (`rights::as_table_owner`): no setting or role can turn it on. On Citus, permissive policies
//! and no FORCE (see `apply`). What the table had before is kept in `retention.hidden_tables`
//! and put back.

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

use super::{Policy, Target, TimeType};
use crate::error::spi;
use crate::rights::{as_extension_owner, as_table_owner};
use crate::statement::{execute, one};

/// The one function a hiding policy's expression calls, in a schema of its own that PUBLIC may
/// use: PostgreSQL checks the table owner's USAGE on a function's schema when a policy is
/// created, and the application's role must not need any right on schema `retention`.
#[pg_schema]
mod retention_rls {
    use pgrx::prelude::*;

    /// True only while pg_retention itself acts on a policy's table (`rights::acting_on_table`):
    /// the way `hide_expired`'s row-level security lets the run see what it hides.
    #[pg_extern(stable, parallel_safe)]
    fn run_sees_all() -> bool {
        crate::rights::acting_on_table()
    }
}

/// The names of the policy's RLS policies on its table.
fn names(policy_id: i32) -> [String; 5] {
    ["select", "update", "delete", "allow", "owner"].map(|what| format!("pg_retention_{policy_id}_{what}"))
}

/// `DROP POLICY` of each of these that the table has (no NOTICE for the others).
fn drops(relid: pg_sys::Oid, table: &str, wanted: &[String]) -> Vec<String> {
    let present: Vec<String> = spi(Spi::connect(|client| {
        let rows = client.select("SELECT polname::pg_catalog.text FROM pg_catalog.pg_policy WHERE polrelid OPERATOR(pg_catalog.=) $1", None, &[relid.into()])?;
        rows.into_iter().map(|row| row.get::<String>(1).map(Option::unwrap_or_default)).collect::<Result<Vec<_>, _>>()
    }));
    wanted.iter().filter(|name| present.contains(name)).map(|name| format!("DROP POLICY {} ON {table}", quote_identifier(name))).collect()
}

/// The rows a query may see: not yet expired, or with no time at all (never deleted either).
pub fn live(policy: &Policy, target: &Target, retain_literal: Option<&str>) -> String {
    let column = quote_identifier(&policy.time_column);
    let instant = match retain_literal {
        None => "pg_catalog.now()".to_string(),
        // As a run computes its cutoff: subtracted in UTC, so that no DST change moves it.
        Some(retain) => format!("pg_catalog.timezone('UTC', pg_catalog.timezone('UTC', pg_catalog.now()) OPERATOR(pg_catalog.-) {retain}::pg_catalog.interval)"),
    };
    let cutoff = match target.time_type {
        TimeType::TimestampTz => instant,
        TimeType::Timestamp => format!("pg_catalog.timezone('UTC', {instant})"),
        TimeType::Date => format!("pg_catalog.timezone('UTC', {instant})::pg_catalog.date"),
    };
    format!("({column} IS NULL OR {column} OPERATOR(pg_catalog.>=) {cutoff})")
}

/// The table and every member of its tree (partitions, inheritance children), each of which a
/// query may name directly.
fn tree(relid: pg_sys::Oid) -> Vec<(pg_sys::Oid, String)> {
    spi(Spi::connect(|client| {
        let rows = client.select(
            "WITH RECURSIVE t(relid) AS (SELECT $1::pg_catalog.oid
                                         UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN t ON i.inhparent OPERATOR(pg_catalog.=) t.relid)
             SELECT t.relid, t.relid::pg_catalog.regclass::pg_catalog.text FROM t ORDER BY 1",
            None,
            &[relid.into()],
        )?;
        rows.into_iter().map(|row| Ok((row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid), row.get::<String>(2)?.unwrap_or_default()))).collect()
    }))
}

/// Creates (or makes again, after a change of the policy) the RLS policies on the table and on
/// every member of its tree, remembering what each had before. A table that was not forced
/// keeps its owner out of its own permissive policies (a permissive `true` for the owner, as
/// before); one with restrictive policies of its own is refused, since FORCE would newly apply
/// them to its owner and to the run.
pub fn apply(policy: &Policy, target: &Target) {
    let citus = target.citus.is_some();
    let retain = policy.retain.map(|retain| one::<String>("SELECT pg_catalog.quote_literal($1::pg_catalog.text)", || vec![retain.into()]).unwrap_or_default());
    let live = live(policy, target, retain.as_deref());
    let all = names(policy.id);
    let [select, update, delete, allow, owner_allow] = all.clone().map(|n| quote_identifier(&n));
    let mut statements = Vec::new();
    for (relid, table) in tree(target.relid) {
        let remembered = as_extension_owner(|| {
            one::<bool>(
                "SELECT (SELECT had_force FROM retention.hidden_tables WHERE policy_id OPERATOR(pg_catalog.=) $1 AND relid::pg_catalog.oid OPERATOR(pg_catalog.=) $2)",
                || vec![policy.id.into(), relid.into()],
            )
        });
        let had_force = remembered.unwrap_or_else(|| {
            let (had_rls, had_force) = spi(Spi::get_two_with_args::<bool, bool>(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
                &[relid.into()],
            ));
            let had_force = had_force.unwrap_or(false);
            as_extension_owner(|| {
                execute(
                    "INSERT INTO retention.hidden_tables (policy_id, relid, had_rls, had_force) VALUES ($1, $2::pg_catalog.oid::pg_catalog.regclass, $3, $4)",
                    || vec![policy.id.into(), relid.into(), had_rls.unwrap_or(false).into(), had_force.into()],
                )
            });
            had_force
        });
        // The table's own policies (not this policy's): permissive, restrictive; and its owner.
        let (permissive, restrictive, owner) = spi(Spi::get_three_with_args::<i64, i64, String>(
            "SELECT (SELECT pg_catalog.count(*) FILTER (WHERE p.polpermissive) FROM pg_catalog.pg_policy p
                      WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid AND NOT p.polname OPERATOR(pg_catalog.=) ANY ($2)),
                    (SELECT pg_catalog.count(*) FILTER (WHERE NOT p.polpermissive) FROM pg_catalog.pg_policy p
                      WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid AND NOT p.polname OPERATOR(pg_catalog.=) ANY ($2)),
                    pg_catalog.quote_ident(c.relowner::pg_catalog.regrole::pg_catalog.text)
               FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
            &[relid.into(), all.to_vec().into()],
        ));
        if !had_force && restrictive.unwrap_or(0) > 0 {
            crate::error::raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("retention policy \"{}\": hide_expired cannot hide rows of {table}: it has restrictive row-level security policies of its own, which forcing RLS would newly apply to its owner and to every run", policy.name),
                Some(format!("FORCE it yourself first (ALTER TABLE {table} FORCE ROW LEVEL SECURITY) if its owner should obey them, then turn hide_expired on.")),
            );
        }
        statements.extend(drops(relid, &table, &all));
        if citus {
            // Measured on Citus 13.2.2: policies reach the shards without AS RESTRICTIVE, and
            // shard statements run in the workers' backends, which cannot tell a run's from the
            // owner's. So permissive policies alone (the table may have no others) and RLS not
            // forced: every role but the owner, and so every role but the run, sees live rows.
            if had_force || permissive.unwrap_or(0) + restrictive.unwrap_or(0) > 0 {
                crate::error::raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("retention policy \"{}\": hide_expired cannot hide rows of the Citus table {table}: it has row-level security of its own", policy.name),
                    Some("On Citus, hide_expired needs a table without policies of its own and not forced: Citus copies policies to the shards without AS RESTRICTIVE.".into()),
                );
            }
            statements.extend([
                format!("CREATE POLICY {select} ON {table} FOR SELECT TO PUBLIC USING ({live})"),
                format!("CREATE POLICY {update} ON {table} FOR UPDATE TO PUBLIC USING ({live}) WITH CHECK (true)"),
                format!("CREATE POLICY {delete} ON {table} FOR DELETE TO PUBLIC USING ({live})"),
                format!("CREATE POLICY {allow} ON {table} FOR INSERT TO PUBLIC WITH CHECK (true)"),
                format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY"),
            ]);
            continue;
        }
        statements.extend([
            format!("CREATE POLICY {select} ON {table} AS RESTRICTIVE FOR SELECT TO PUBLIC USING ({live} OR retention_rls.run_sees_all())"),
            format!("CREATE POLICY {update} ON {table} AS RESTRICTIVE FOR UPDATE TO PUBLIC USING ({live} OR retention_rls.run_sees_all()) WITH CHECK (true)"),
            format!("CREATE POLICY {delete} ON {table} AS RESTRICTIVE FOR DELETE TO PUBLIC USING ({live} OR retention_rls.run_sees_all())"),
        ]);
        if permissive.unwrap_or(0) == 0 {
            // A restrictive policy alone hides every row.
            statements.push(format!("CREATE POLICY {allow} ON {table} AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)"));
        } else if !had_force {
            // The owner bypassed the table's own policies before; FORCE must not change that.
            let owner = owner.unwrap_or_default();
            statements.push(format!("CREATE POLICY {owner_allow} ON {table} AS PERMISSIVE FOR ALL TO {owner} USING (true) WITH CHECK (true)"));
        }
        statements.push(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY"));
    }
    as_table_owner(target.owner, || statements.iter().for_each(|sql| { execute(sql, Vec::new); }));
}

/// A policy row written with `hide_expired`: hiding follows it at once, except for a row inserted
/// with `row_security = off`, as pg_restore and pg_dump's scripts insert them. Those restore the
/// table's policies and flags themselves after the data (and `retention.hidden_tables` with it),
/// which policies made here would make fail; the next run applies anything still missing.
pub fn follow_write(policy: &Policy, inserted: bool) {
    let restoring = inserted && one::<String>("SELECT pg_catalog.current_setting('row_security')", Vec::new).as_deref() == Some("off");
    if restoring {
        pgrx::notice!(
            "pg_retention: policy \"{}\": hide_expired not applied now (row_security is off, as in a restore): the table's restored policies, or the next run, hide its expired rows",
            policy.name
        );
        return;
    }
    apply(policy, &policy.check_target(false, false));
}

/// Drops the policy's RLS policies from every table it hid rows of, and puts each table's RLS
/// flags back as they were.
pub fn remove(policy: &Policy) {
    let hidden: Vec<(pg_sys::Oid, bool, bool)> = as_extension_owner(|| {
        spi(Spi::connect_mut(|client| {
            let rows = client.update(
                "DELETE FROM retention.hidden_tables WHERE policy_id OPERATOR(pg_catalog.=) $1 RETURNING relid::pg_catalog.oid, had_rls, had_force",
                None,
                &[policy.id.into()],
            )?;
            rows.into_iter()
                .map(|row| Ok((row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid), row.get::<bool>(2)?.unwrap_or(false), row.get::<bool>(3)?.unwrap_or(false))))
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        }))
    });
    for (relid, had_rls, had_force) in hidden {
        let found = spi(Spi::get_two_with_args::<String, pg_sys::Oid>(
            "SELECT oid::pg_catalog.regclass::pg_catalog.text, relowner FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
            &[relid.into()],
        ));
        let (Some(table), Some(owner)) = found else { continue }; // gone, and its policies with it
        let mut statements = drops(relid, &table, &names(policy.id));
        statements.push(format!("ALTER TABLE {table} {} ROW LEVEL SECURITY", if had_rls { "ENABLE" } else { "DISABLE" }));
        statements.push(format!("ALTER TABLE {table} {} ROW LEVEL SECURITY", if had_force { "FORCE" } else { "NO FORCE" }));
        as_table_owner(owner, || statements.iter().for_each(|sql| { execute(sql, Vec::new); }));
    }
}

/// At each run: a member of the table's tree without the policy's RLS (a partition created since,
/// or policies the owner dropped), whose owner's policy names an owner it no longer has
/// (`ALTER TABLE ... OWNER TO`), or made a Citus table since (whose shards got the restrictive
/// policies as permissive ones), gets them again, with a WARNING naming it.
pub fn ensure(policy: &Policy, target: &Target) {
    let [select, _, _, _, owner] = names(policy.id);
    let missing: Vec<String> = tree(target.relid)
        .into_iter()
        .filter(|(relid, _)| {
            let intact = spi(Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_policy WHERE polrelid OPERATOR(pg_catalog.=) $1 AND polname OPERATOR(pg_catalog.=) $2
                                   AND polpermissive OPERATOR(pg_catalog.=) $4)
                    AND NOT EXISTS (SELECT FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.polrelid
                                     WHERE p.polrelid OPERATOR(pg_catalog.=) $1 AND p.polname OPERATOR(pg_catalog.=) $3
                                       AND p.polroles OPERATOR(pg_catalog.<>) ARRAY[c.relowner])",
                &[(*relid).into(), select.as_str().into(), owner.as_str().into(), target.citus.is_some().into()],
            ));
            intact != Some(true)
        })
        .map(|(_, table)| table)
        .collect();
    if !missing.is_empty() {
        pgrx::warning!(
            "pg_retention: policy \"{}\": hide_expired was missing or out of date on {}; applied again",
            policy.name,
            missing.join(", ")
        );
        apply(policy, target);
    }
}
