-- The audience ("your people" on each network) kept when a graph is deleted (hqx/audience.py).
alter table graphs add column if not exists audience jsonb;
