-- Creates the etlops store database next to Airflow's metadata database.
--
-- The official postgres image runs this file once, when the data volume is
-- empty, as the superuser (POSTGRES_USER) connected to POSTGRES_DB (airflow).
-- The password comes from the container's ETLOPS_DB_PASSWORD variable
-- (psql's \getenv, PostgreSQL 15+); 'etlops' if it is unset, matching the
-- compose default.

\set ON_ERROR_STOP on
\set etlops_password etlops
\getenv etlops_password ETLOPS_DB_PASSWORD

CREATE USER etlops WITH PASSWORD :'etlops_password';
CREATE DATABASE etlops OWNER etlops;

-- Only the owner (and superusers) may connect to the store.
REVOKE ALL ON DATABASE etlops FROM PUBLIC;
