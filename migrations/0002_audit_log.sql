-- The audit log, filled by triggers (procedures/audit.sql), and the application's
-- representation of each audited row image (instance_repr), filled in batches by a
-- Procrastinate chain (pyapp/audit/tasks.py).
--
-- audit_log is append-only: procedures/audit.sql adds a trigger refusing update,
-- delete and truncate to anyone but the table's owner.

create table audit_log (
    id bigint generated always as identity,
    schema_name text not null,
    table_name text not null,
    op text not null,
    row_key jsonb,
    old_row jsonb,
    new_row jsonb,
    changed_columns text[],
    txid bigint not null,
    logged_at timestamptz not null default statement_timestamp(),
    actor text not null,
    db_role text not null default current_user,
    constraint audit_log_pkey primary key (id),
    constraint audit_log_op_check
        check (op in ('insert', 'update', 'delete', 'truncate')),
    constraint audit_log_images_check check (
        case op
            when 'insert' then old_row is null and new_row is not null
            when 'update' then old_row is not null and new_row is not null
            when 'delete' then old_row is not null and new_row is null
            else old_row is null and new_row is null and row_key is null
        end
    )
);

comment on table audit_log is
    'One row per audited row change (insert, update, delete) and one per truncate; '
    'written by the audit_capture_* triggers that audit_table() installs. Append-only.';
comment on column audit_log.row_key is
    'The primary key of the changed row as a jsonb object, e.g. {"id": 5}.';
comment on column audit_log.changed_columns is
    'For an update, the columns whose values differ between old_row and new_row.';
comment on column audit_log.txid is
    'The top-level transaction id (pg_current_xact_id(), epoch included).';
comment on column audit_log.actor is
    'Who made the change: the pgzen.actor setting of the transaction (the signed-in '
    'user, a task name), else the database role.';
comment on column audit_log.db_role is
    'The database role that ran the statement (current_user), whatever actor claims.';

-- The representation chain walks audit_log in (txid, id) order: every transaction
-- older than the oldest one still running is final, so the walk never skips a row
-- that commits late.
create index audit_log_txid_id_idx on audit_log (txid, id);

-- A row's history: where table_name = 'person' and row_key = '{"id": 5}'.
create index audit_log_row_key_idx on audit_log (table_name, row_key);

create table instance_repr (
    audit_log_id bigint not null,
    audit_txid bigint not null,
    repr text not null,
    made_at timestamptz not null default statement_timestamp(),
    constraint instance_repr_pkey primary key (audit_log_id),
    constraint instance_repr_audit_log_fkey foreign key (audit_log_id)
        references audit_log (id) on delete cascade
);

comment on table instance_repr is
    'The application''s str() of the row image of one audit_log row, made after the '
    'fact by the "reprs" backfill chain. audit_txid copies audit_log.txid so the '
    'chain finds where it stopped with one index probe.';

create index instance_repr_cursor_idx on instance_repr (audit_txid, audit_log_id);

revoke all on audit_log, instance_repr from public;
