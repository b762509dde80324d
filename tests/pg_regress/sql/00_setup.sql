-- CREATE EXTENSION adds the schema, the catalog and the presets, even before the
-- application tables exist.
CREATE EXTENSION pg_retention;
SELECT name, table_schema, table_name, time_column, rule, retain, action, batch_size, enabled
  FROM retention.policies ORDER BY name;
-- Running a preset whose table is missing names the table and says how to repoint it.
SELECT cleanup_expired_traces();
SELECT cleanup_old_agent_usage();
SELECT cleanup_old_recordings();
