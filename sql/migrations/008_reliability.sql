-- Least privilege for the pipeline (issue #9: reliability and security).
-- Applied once by liftlab.migrations; never edit after it has been applied — add 009.
--
-- The pipeline logs in as a user that is a member of liftlab_writer and takes that role on
-- login, so that every table it creates (dbt's marts, raw.src_<id>) is owned by liftlab_writer:
--   create user pipeline login password '…' in role liftlab_writer;
--   alter role pipeline set role liftlab_writer;
-- Migrations stay with the database owner (`liftlab migrate` with the owner's DATABASE_URL).

-- The pipeline checks which migrations are applied (liftlab.migrations.apply) but never records one.
grant select on public.liftlab_migrations to liftlab_writer;

-- dbt rebuilds the marts on every run (a new table each time) and the loaders create
-- raw.src_<id>: grants made once on existing tables are lost, so analysts keep reading what the
-- pipeline (re)creates in the schemas they read only through the writer's default privileges.
-- (006 made the same defaults for objects created by the migration runner.)
alter default privileges for role liftlab_writer in schema results, marts, gates
    grant select on tables to liftlab_reader;
