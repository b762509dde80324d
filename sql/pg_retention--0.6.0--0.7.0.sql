-- pg_retention 0.6.0 -> 0.7.0
-- Trust: a legal hold belongs to its table (target), not to a policy's name, and keeps its
-- condition as parsed when it was added (expression); a policy is altered or dropped only by a
-- member of its table's owner (the validation trigger fires on DELETE too); each run names the
-- table it acted on (runs.target, what its ledger entry says); a partition detached by a run
-- that died before counting it is counted by the next run (detached_partitions.run_id, kept);
-- run_worker_now() asks by inserting into retention.run_requests, which locks nothing the
-- worker needs.

-- Holds: bound to the table their policy names now. A hold whose policy or table is gone
-- keeps no table's rows (as it kept none before).
ALTER TABLE retention.holds ADD COLUMN target regclass, ADD COLUMN expression text;
UPDATE retention.holds h
   SET target = (SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', p.table_schema, p.table_name))
                   FROM retention.policies p WHERE p.name OPERATOR(pg_catalog.=) h.policy),
       -- A 0.6.0 hold's text, read from now on in the fixed settings every run uses.
       expression = h.condition;
ALTER TABLE retention.holds ALTER COLUMN expression SET NOT NULL;
DROP INDEX retention.holds_active_name_idx;
CREATE UNIQUE INDEX holds_active_target_name_idx ON retention.holds (target, name) WHERE released_at IS NULL;

ALTER TABLE retention.runs ADD COLUMN target text;

ALTER TABLE retention.detached_partitions ADD COLUMN run_id bigint, ADD COLUMN kept boolean NOT NULL DEFAULT false;

ALTER TABLE retention.worker_state DROP COLUMN run_requested_at;
CREATE TABLE retention.run_requests (
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    requested_by text NOT NULL DEFAULT CURRENT_USER
);
COMMENT ON TABLE retention.run_requests IS 'Requests of retention.run_worker_now(), until the worker starts the run they ask for';
REVOKE ALL ON retention.run_requests FROM PUBLIC;

DROP TRIGGER policies_validate ON retention.policies;
CREATE TRIGGER policies_validate BEFORE INSERT OR UPDATE OR DELETE ON retention.policies
    FOR EACH ROW EXECUTE FUNCTION retention.policies_validate();
