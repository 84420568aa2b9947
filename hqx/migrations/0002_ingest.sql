-- Ingest: which upload produced the current graph, so a redelivered upload is recognised
-- (no second version) and an older upload processed late never replaces a newer graph.
alter table graphs add column object_name text;
alter table graphs add column uploaded_at timestamptz;
