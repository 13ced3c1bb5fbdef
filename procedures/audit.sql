-- requires: 0002_audit_log
--
-- Audit triggers: audit_table(t) installs four statement-level triggers on t that copy
-- every changed row into audit_log, once per statement, from the statement's transition
-- tables. A row-level trigger would run PL/pgSQL once per row; these run it once per
-- statement and let one INSERT ... SELECT do the rest (docs/audit.md has the figures).
--
-- "Who" is the transaction's pgzen.actor setting (set_config('pgzen.actor', name,
-- true); pyapp.audit.context sets it for the web app and for tasks), else the role.


-- One statement's inserted rows.
create or replace function audit_capture_insert()
    returns trigger
    language plpgsql
as $$
declare
    tx bigint := pg_current_xact_id()::text::bigint;
    who text := coalesce(nullif(current_setting('pgzen.actor', true), ''), current_user);
begin
    if tg_nargs = 1 then
        insert into audit_log (schema_name, table_name, op, row_key, new_row, txid, actor)
        select tg_table_schema, tg_table_name, 'insert',
               jsonb_build_object(tg_argv[0], r.image -> tg_argv[0]), r.image, tx, who
          from (select to_jsonb(n) as image from audit_new as n) as r;
    else
        insert into audit_log (schema_name, table_name, op, row_key, new_row, txid, actor)
        select tg_table_schema, tg_table_name, 'insert',
               (select jsonb_object_agg(k, r.image -> k) from unnest(tg_argv) as k),
               r.image, tx, who
          from (select to_jsonb(n) as image from audit_new as n) as r;
    end if;
    return null;
end
$$;

comment on function audit_capture_insert() is
    'Trigger function (statement level, new table audit_new): log inserted rows. '
    'Arguments: the primary key columns. Installed by audit_table().';


-- One statement's updated rows. The two transition tables hold the old and the new
-- image of each updated row in the same order (the server appends both images of a
-- row together), so rows are paired by position; pairing by key would lose the rows
-- of an update that changes the key.
--
-- Up to 10,000 rows, the images are paired by unnest() of two arrays, which zips
-- them by position: no join and nothing for the planner to weigh. Each of those
-- statements reads only variables whose values do not change its plan's cost (one
-- statement per key arity, no CASE on tg_nargs), so after its first five calls in a
-- session the server keeps one generic plan instead of planning every one-row
-- update again (about a third of an audited one-row update's time, measured).
--
-- Above 10,000 rows, two whole arrays could outgrow memory and the 1 GB limit on one
-- value, so the rows are numbered, gathered into arrays of 10,000 by position, and
-- each pair of arrays is zipped. The only join is between those chunks, n / 10,000
-- rows a side, so no join method the planner picks can go quadratic in the rows
-- (an earlier version joined row by row and had to turn nested loops off with a SET
-- clause on the function, which every call then paid for).
-- TODO: one-row UPDATEs with synchronous_commit off reach 30-50% of their unaudited
-- throughput on the test machine, against the 75% issue 4 aims at. Timed
-- inside the server (EXPLAIN ANALYZE trigger time, docs/performance.md), this trigger
-- takes about 100 us for one row: 10 us to fire at all, some 55 us to start and run
-- one INSERT into audit_log with its five indexes (24 us into a copy without
-- indexes), 40 us for the images, key and changed columns. An unaudited one-row
-- update takes about 45 us in all, so any trigger writing a row in the same
-- transaction stays far below 75%; meeting it means capturing changes outside the
-- writing transaction (logical decoding), a design decision beyond this issue.
create or replace function audit_capture_update()
    returns trigger
    language plpgsql
as $$
declare
    tx bigint := pg_current_xact_id()::text::bigint;
    who text := coalesce(nullif(current_setting('pgzen.actor', true), ''), current_user);
begin
    perform from audit_new offset 10000 limit 1;
    if not found and tg_nargs = 1 then
        insert into audit_log (
            schema_name, table_name, op, row_key, old_row, new_row, changed_columns,
            txid, actor
        )
        select tg_table_schema, tg_table_name, 'update',
               jsonb_build_object(tg_argv[0], p.new_image -> tg_argv[0]),
               p.old_image, p.new_image,
               array(select e.key
                       from jsonb_each(p.new_image) as e
                      where e.value is distinct from p.old_image -> e.key),
               tx, who
          from unnest(array(select to_jsonb(t) from audit_old as t),
                      array(select to_jsonb(t) from audit_new as t))
               as p(old_image, new_image);
    elsif not found then
        insert into audit_log (
            schema_name, table_name, op, row_key, old_row, new_row, changed_columns,
            txid, actor
        )
        select tg_table_schema, tg_table_name, 'update',
               (select jsonb_object_agg(k, p.new_image -> k) from unnest(tg_argv) as k),
               p.old_image, p.new_image,
               array(select e.key
                       from jsonb_each(p.new_image) as e
                      where e.value is distinct from p.old_image -> e.key),
               tx, who
          from unnest(array(select to_jsonb(t) from audit_old as t),
                      array(select to_jsonb(t) from audit_new as t))
               as p(old_image, new_image);
    else
        insert into audit_log (
            schema_name, table_name, op, row_key, old_row, new_row, changed_columns,
            txid, actor
        )
        select tg_table_schema, tg_table_name, 'update',
               case when tg_nargs = 1
                    then jsonb_build_object(tg_argv[0], p.new_image -> tg_argv[0])
                    else (select jsonb_object_agg(k, p.new_image -> k)
                            from unnest(tg_argv) as k)
               end,
               p.old_image, p.new_image,
               array(select e.key
                       from jsonb_each(p.new_image) as e
                      where e.value is distinct from p.old_image -> e.key),
               tx, who
          from (select (r.pos - 1) / 10000 as chunk,
                       array_agg(r.image order by r.pos) as images
                  from (select row_number() over () as pos, to_jsonb(t) as image
                          from audit_old as t) as r
                 group by 1) as o
          join (select (r.pos - 1) / 10000 as chunk,
                       array_agg(r.image order by r.pos) as images
                  from (select row_number() over () as pos, to_jsonb(t) as image
                          from audit_new as t) as r
                 group by 1) as n
            on n.chunk = o.chunk
         cross join lateral unnest(o.images, n.images) as p(old_image, new_image);
    end if;
    return null;
end
$$;

comment on function audit_capture_update() is
    'Trigger function (statement level, old table audit_old, new table audit_new): '
    'log updated rows with both images and the changed columns. Arguments: the '
    'primary key columns. Installed by audit_table().';


-- One statement's deleted rows.
create or replace function audit_capture_delete()
    returns trigger
    language plpgsql
as $$
declare
    tx bigint := pg_current_xact_id()::text::bigint;
    who text := coalesce(nullif(current_setting('pgzen.actor', true), ''), current_user);
begin
    if tg_nargs = 1 then
        insert into audit_log (schema_name, table_name, op, row_key, old_row, txid, actor)
        select tg_table_schema, tg_table_name, 'delete',
               jsonb_build_object(tg_argv[0], r.image -> tg_argv[0]), r.image, tx, who
          from (select to_jsonb(o) as image from audit_old as o) as r;
    else
        insert into audit_log (schema_name, table_name, op, row_key, old_row, txid, actor)
        select tg_table_schema, tg_table_name, 'delete',
               (select jsonb_object_agg(k, r.image -> k) from unnest(tg_argv) as k),
               r.image, tx, who
          from (select to_jsonb(o) as image from audit_old as o) as r;
    end if;
    return null;
end
$$;

comment on function audit_capture_delete() is
    'Trigger function (statement level, old table audit_old): log deleted rows. '
    'Arguments: the primary key columns. Installed by audit_table().';


-- A truncate removes rows without visiting them: one audit row marks it.
create or replace function audit_capture_truncate()
    returns trigger
    language plpgsql
as $$
begin
    insert into audit_log (schema_name, table_name, op, txid, actor)
    values (
        tg_table_schema, tg_table_name, 'truncate', pg_current_xact_id()::text::bigint,
        coalesce(nullif(current_setting('pgzen.actor', true), ''), current_user)
    );
    return null;
end
$$;

comment on function audit_capture_truncate() is
    'Trigger function (statement level): log a truncate as one audit row without '
    'images. Installed by audit_table().';


create or replace function audit_table(target regclass, enabled boolean default true)
    returns void
    language plpgsql
as $$
declare
    kind "char";
    key_columns text[];
    key_arguments text;
begin
    select c.relkind into kind from pg_class as c where c.oid = target;
    if kind not in ('r', 'p') then
        raise exception 'cannot audit %: it is not a table', target
            using errcode = 'wrong_object_type';
    end if;
    if target in ('audit_log'::regclass, 'instance_repr'::regclass) then
        raise exception 'cannot audit %: it is part of the audit log itself', target
            using errcode = 'invalid_parameter_value';
    end if;

    if not enabled then
        execute format('drop trigger if exists audit_insert on %s', target);
        execute format('drop trigger if exists audit_update on %s', target);
        execute format('drop trigger if exists audit_delete on %s', target);
        execute format('drop trigger if exists audit_truncate on %s', target);
        return;
    end if;

    -- The key names each audit row's table row; without one, rows cannot be told apart.
    select array_agg(a.attname::text order by k.ord)
      into key_columns
      from pg_index as i
     cross join unnest(i.indkey) with ordinality as k(attnum, ord)
      join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = k.attnum
     where i.indrelid = target and i.indisprimary;
    if key_columns is null then
        raise exception 'cannot audit %: it has no primary key', target
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'Add a primary key; audit rows name their table row by it.';
    end if;
    select string_agg(quote_literal(c), ', ') into key_arguments
      from unnest(key_columns) as c;

    -- create or replace: calling it again refreshes the triggers (say, a new key).
    execute format(
        'create or replace trigger audit_insert after insert on %s '
        'referencing new table as audit_new '
        'for each statement execute function audit_capture_insert(%s)',
        target, key_arguments);
    execute format(
        'create or replace trigger audit_update after update on %s '
        'referencing old table as audit_old new table as audit_new '
        'for each statement execute function audit_capture_update(%s)',
        target, key_arguments);
    execute format(
        'create or replace trigger audit_delete after delete on %s '
        'referencing old table as audit_old '
        'for each statement execute function audit_capture_delete(%s)',
        target, key_arguments);
    execute format(
        'create or replace trigger audit_truncate after truncate on %s '
        'for each statement execute function audit_capture_truncate()',
        target);
end
$$;

comment on function audit_table(regclass, boolean) is
    'audit_table(t) records every insert, update, delete and truncate on table t in '
    'audit_log; audit_table(t, false) stops it. Idempotent: calling it again refreshes '
    'the triggers (run it after changing t''s primary key). Refuses a table without a '
    'primary key. Example: select audit_table(''person'');';


-- The reprs chain reads audit rows in (txid, id) order, and only those of
-- transactions that can no longer add rows. That is every transaction older than the
-- oldest one running at the statement's snapshot, except that one running in another
-- database cannot write here: leaving it out keeps a long transaction elsewhere on
-- the server from holding the chain back. One that ended between the snapshot and the
-- look at pg_stat_activity is kept in: its rows are invisible to the snapshot.
create or replace function audit_horizon()
    returns bigint
    stable
    language sql
as $$
    with snapshot as (select pg_current_snapshot() as s)
    select least(
        (select pg_snapshot_xmax(s)::text::bigint from snapshot),
        (select min(x::text::bigint)
           from snapshot, pg_snapshot_xip(s) as x
          where x::text::bigint % 4294967296 not in (
                select a.backend_xid::text::bigint
                  from pg_stat_activity as a
                 where a.backend_xid is not null
                   and a.datname is distinct from current_database())))
$$;

comment on function audit_horizon() is
    'The lowest transaction id (with epoch) whose audit rows may still appear or be '
    'invisible to the current snapshot; audit rows with txid below it are final. The '
    'reprs chain reads only those.';


-- Append-only: the owner may prune (retention), nobody else may change history.
create or replace function audit_refuse_change()
    returns trigger
    language plpgsql
as $$
declare
    owner oid;
begin
    select c.relowner into owner from pg_class as c where c.oid = tg_relid;
    if not pg_has_role(current_user, owner, 'usage') then
        raise exception '% is append-only: % refused for role %',
                tg_table_name, lower(tg_op), current_user
            using errcode = 'insufficient_privilege',
                  hint = format('Only its owner, %s, may change or remove audit rows.',
                                owner::regrole);
    end if;
    return null;
end
$$;

comment on function audit_refuse_change() is
    'Trigger function (statement level, before update, delete or truncate on '
    'audit_log): refuse the statement unless the current role is (a member of) the '
    'table''s owner.';

create or replace trigger audit_log_append_only
    before update or delete or truncate on audit_log
    for each statement execute function audit_refuse_change();
