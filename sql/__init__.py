"""The DuckDB schema and views (plain .sql files), shipped as package data of `sn_store.sql`."""
