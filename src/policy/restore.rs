//! Presets across a dump and restore. `CREATE EXTENSION` in the restored database makes the
//! presets again before `pg_restore` (or `pg_dumpall | psql`) loads the dumped catalog. A
//! dumped row then replaces the preset of its name (or its id) while that preset is
//! *pristine*: as `CREATE EXTENSION` made it, its row written by the very transaction that
//! created the extension and never since. A preset the source had removed is removed again
//! by `retention.removed_presets` (see `sql/finalize.sql`).

use pgrx::prelude::*;

use super::Policy;
use crate::error::spi;
use crate::rights;

/// What names a policy's target; a restored preset row whose target is the pristine preset's
/// own needs no existing table, as the preset did not.
const TARGET_COLUMNS: &str = "table_schema, table_name, time_column, action, soft_delete_column, reason_column, sid_column, id_column, account_column";

/// Deletes the pristine presets that the row being inserted replaces (same name or same id).
/// Returns whether it replaced the preset of its name with the same target. They are looked
/// for with the extension owner's rights (the writer may not read `pg_extension`'s row as it
/// is), and deleted with the writer's own: replacing a preset takes the right to delete one.
pub fn replace_pristine_presets(policy: &Policy) -> bool {
    let pristine = format!(
        "p.xmin OPERATOR(pg_catalog.=) (SELECT e.xmin FROM pg_catalog.pg_extension e
                                         WHERE e.extname OPERATOR(pg_catalog.=) 'pg_retention')
         AND (p.name OPERATOR(pg_catalog.=) $1 OR p.id OPERATOR(pg_catalog.=) $2)"
    );
    let key = || vec![policy.name.as_str().into(), policy.id.into()];
    let found = rights::as_extension_owner(|| {
        spi(Spi::get_one_with_args::<i64>(&format!("SELECT pg_catalog.count(*) FROM retention.policies p WHERE {pristine}"), &key()))
    });
    if found.unwrap_or(0) == 0 {
        return false;
    }
    let mut args = key();
    args.extend([
        policy.table_schema.as_str().into(),
        policy.table_name.as_str().into(),
        policy.time_column.as_str().into(),
        policy.action.as_str().into(),
        policy.soft_delete_column.as_deref().into(),
        policy.reason_column.as_deref().into(),
        policy.sid_column.as_deref().into(),
        policy.id_column.as_deref().into(),
        policy.account_column.as_deref().into(),
    ]);
    let same_target = spi(Spi::get_one_with_args::<i64>(
        &format!(
            "WITH deleted AS (DELETE FROM retention.policies p WHERE {pristine} RETURNING p.*)
             SELECT pg_catalog.count(*) FILTER (WHERE p.name OPERATOR(pg_catalog.=) $1
                        AND ({TARGET_COLUMNS}) IS NOT DISTINCT FROM ($3, $4, $5, $6, $7, $8, $9, $10, $11))
               FROM deleted p"
        ),
        &args,
    ));
    same_target.unwrap_or(0) > 0
}
