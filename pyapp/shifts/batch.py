"""The statement a shifts backfill job runs for one batch (Django-free, so that the
benchmark runs exactly what the worker runs).

Annotations are derived data: a batch lost in a crash is redone by its chain, from
the cursor its job was given. So the batch's transaction commits without waiting
for its WAL to reach disk (``synchronous_commit`` off for that transaction only,
``set_config(..., true)``), which on this project's test machine saves about a
quarter of a chain's time (docs/performance.md). Still crash-safe: WAL is flushed in
order, so a successor job that survived a crash implies its batch survived too.
The setting is read at commit, so it may be made in the same statement as the
batch; in autocommit it covers that statement's own transaction.
"""

BATCH_STATEMENT = (
    "select b.examined, b.written, b.last_id,"
    "       set_config('synchronous_commit', 'off', true)"
    "  from shift_annotation_backfill_batch(%s, %s, %s, %s) b"
)
