"""ingest: turns an uploaded X archive into a stored follow graph.

Consumes: `hqx.archive.uploaded.<user>` (ARCHIVES work queue; the zip sits in the `archives`
object store and is streamed from it, never loaded whole).
Produces: `hqx.graph.ingested.<user>` or `hqx.archive.rejected.<user>` (stable reason code), and
always `hqx.archive.unpacked.<user>` so the purger deletes the raw archive.
Owns: `graphs` and `graph_edges` (one graph per user, replaced by each newer upload, via COPY).
"""
