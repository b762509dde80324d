//! Running a policy. `run` holds the lifecycle and its one loop; `plan` how a run splits into
//! batches; `sql` the statements, built once per run; `recordings` the Twilio batches; `lock`
//! the per-policy lock; `xact` the transaction mechanics. Whose rights a statement uses is
//! `crate::rights`.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use crate::error::{self, spi};
use crate::policy::Policy;

mod caller;
mod lock;
mod partitions;
mod plan;
mod recordings;
mod committer;
mod external;
mod objects;
mod run;
mod sql;
mod stride;
pub mod xact;

pub use committer::Committer;
pub use external::limits as twilio_limits;
pub use run::run;

/// Counts what a run would touch now: same predicate and cutoff rule, nothing changed.
pub fn preview(name: &str, retain: Option<Interval>) -> JsonB {
    let policy = Policy::load(name);
    let chosen_retain = retain.is_some();
    let retain = policy.retain_for_run(retain);
    let target = policy.check_target(true, false);
    if chosen_retain {
        check_may_read(&policy, &target, name);
    }
    let holds = crate::policy::holds::active(&policy.name, target.relid);
    let parts = sql::Parts::new(&policy, &target).with_holds(&holds);
    let cutoff = crate::policy::cutoff(retain);
    let mut result = crate::rights::as_table_owner(target.owner, || {
        let mut counted = sql::preview(&parts, cutoff).map(|j| j.0).unwrap_or_else(|| json!({}));
        if !holds.is_empty() {
            counted["held"] = json!(sql::held(&parts, cutoff, None));
        }
        if let (crate::policy::Action::TwilioRecording, Some(sid_column)) = (policy.action, policy.sid_column.as_deref()) {
            if let Some(JsonB(serde_json::Value::Object(dry_run))) = sql::recordings_preview(&parts, &policy, sid_column, cutoff) {
                if let serde_json::Value::Object(map) = &mut counted {
                    map.extend(dry_run);
                    if let Some(store) = &policy.s3_store {
                        // Its secret file read as a run would, so that a preview finds what a run would refuse.
                        crate::store::Store::load(store, &policy.name).s3_config(policy.s3_versions);
                        map.insert("s3_store".into(), json!(store));
                    }
                    if policy.transcriptions {
                        // Not asked of Twilio by a preview: how many there are is known only by listing.
                        map.insert("transcriptions".into(), json!("listed, then each deleted, before each recording sent"));
                    }
                }
            }
        }
        if target.has_children {
            partitions::preview(&policy, &target, &parts, cutoff, &mut counted);
        }
        counted
    });
    result["policy"] = json!(name);
    result["table"] = json!(format!("{}.{}", policy.table_schema, policy.table_name));
    result["cutoff"] = json!(timestamp_text(cutoff));
    result["batch_size"] = json!(policy.batch_size);
    JsonB(result)
}

/// A preview at a cutoff of the caller's choosing counts rows at any age it likes: asked again
/// and again, it would tell every timestamp of the table. So it needs the right to read the
/// table (SELECT on it, which a member of its owner has); the policy's own cutoff needs none.
fn check_may_read(policy: &Policy, target: &crate::policy::Target, name: &str) {
    let may = spi(pgrx::Spi::get_one_with_args::<bool>("SELECT pg_catalog.has_table_privilege($1, 'SELECT')", &[target.relid.into()]));
    if may != Some(true) {
        crate::error::raise(
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("retention policy \"{name}\": a preview at a retain interval other than the policy's needs SELECT on {}", policy.qualified_table()),
            Some(format!("SELECT retention.preview('{}') previews the policy's own interval without it.", name.replace('\'', "''"))),
        )
    }
}

/// A policy's backlog for the status view: its preview, or the error that stops it.
pub fn backlog(name: &str) -> JsonB {
    match xact::in_subtransaction(|| preview(name, None)) {
        Ok(preview) => preview,
        Err(error) => JsonB(json!({ "error": error::message(&error) })),
    }
}

/// ISO 8601 in UTC with six fraction digits and `+00:00` (not `Z`, which Python 3.10's
/// `fromisoformat` rejects), whatever the session's DateStyle and TimeZone.
fn timestamp_text(ts: TimestampWithTimeZone) -> String {
    spi(Spi::get_one_with_args::<String>(
        &format!("SELECT pg_catalog.to_char(pg_catalog.timezone('UTC', $1), {})", crate::history::UTC_TEXT),
        &[ts.into()],
    ))
    .unwrap_or_default()
}
