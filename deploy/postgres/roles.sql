-- Two roles for Weir, least privilege (run by scripts/pg-roles.sh, as a superuser or a
-- role with CREATEROLE; idempotent).
--
--   migrator  owns the schema and its tables: `weir migrate` connects as it.
--   runtime   can read, write and delete rows of the tables in the schema, and nothing
--             else: no CREATE, no DROP, no ALTER, no TRUNCATE. `weir run` connects as it
--             (a tombstone, a Debezium delete and an upsert table's replaced child rows
--             delete rows).
--             It may call the functions `weir migrate` installs (owned by the migrator,
--             SECURITY DEFINER), which make and drop time partitions of Weir's own tables.
--
-- psql variables: schema, migrator, runtime, migrator_password, runtime_password.

SELECT format('CREATE ROLE %I LOGIN', :'migrator')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'migrator') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'runtime')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'runtime') \gexec
ALTER ROLE :"migrator" LOGIN NOSUPERUSER NOCREATEROLE PASSWORD :'migrator_password';
ALTER ROLE :"runtime" LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD :'runtime_password';

-- The migrator may create the schema (and so `CREATE SCHEMA IF NOT EXISTS` passes).
SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO %I', current_database(), :'migrator') \gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'schema', :'migrator') \gexec
ALTER SCHEMA :"schema" OWNER TO :"migrator";
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;

-- The runtime role: connect, temporary staging tables (COPY lands there first), and rows.
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), :'runtime') \gexec
GRANT USAGE ON SCHEMA :"schema" TO :"runtime";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA :"schema" TO :"runtime";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA :"schema" TO :"runtime";
-- Tables the migrator creates later (new event types, partitions) get the same grants.
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA :"schema"
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA :"schema"
  GRANT USAGE, SELECT ON SEQUENCES TO :"runtime";
-- The partition functions (<table>_add_partition, <table>_drop_expired); `weir migrate`
-- revokes them from PUBLIC, so only this grant lets a role call them.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA :"schema" TO :"runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA :"schema"
  GRANT EXECUTE ON FUNCTIONS TO :"runtime";
