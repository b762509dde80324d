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
const TARGET_COLUMNS: &str = "table_schema, table_name, time_column, action, soft_delete_column, reason_column, sid_column, id_column";

/// Deletes the pristine presets that the row being inserted replaces (same name or same id).
/// Returns whether it replaced the preset of its name with the same target.
pub fn replace_pristine_presets(policy: &Policy) -> bool {
    let same_target = format!(
        "SELECT pg_catalog.count(*) FILTER (WHERE p.name OPERATOR(pg_catalog.=) $1
                   AND ({TARGET_COLUMNS}) IS NOT DISTINCT FROM ($3, $4, $5, $6, $7, $8, $9, $10))
           FROM deleted p"
    );
    let sql = format!(
        "WITH deleted AS (
             DELETE FROM retention.policies p
              WHERE (p.name OPERATOR(pg_catalog.=) $1 OR p.id OPERATOR(pg_catalog.=) $2)
                AND p.xmin OPERATOR(pg_catalog.=) (SELECT e.xmin FROM pg_catalog.pg_extension e
                                                    WHERE e.extname OPERATOR(pg_catalog.=) 'pg_retention')
              RETURNING p.*)
         {same_target}"
    );
    let replaced = rights::as_extension_owner(|| {
        spi(Spi::get_one_with_args::<i64>(
            &sql,
            &[
                policy.name.as_str().into(),
                policy.id.into(),
                policy.table_schema.as_str().into(),
                policy.table_name.as_str().into(),
                policy.time_column.as_str().into(),
                policy.action.as_str().into(),
                policy.soft_delete_column.as_deref().into(),
                policy.reason_column.as_deref().into(),
                policy.sid_column.as_deref().into(),
                policy.id_column.as_deref().into(),
            ],
        ))
    });
    replaced.unwrap_or(0) > 0
}
