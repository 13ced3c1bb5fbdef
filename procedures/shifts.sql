-- requires: 0010_shifts
--
-- Shift annotations: the one computation, the triggers that keep it current, and the
-- batch that backfills it.
--
--   shift_annotation_values          the computation (a chain of CTE steps), used by
--                                    the triggers, the batch and the benchmark alike
--   location_time_zone_check         refuses time zones the server does not know
--   location_time_zone_stale         bumps time_zone_version when time_zone changes
--   shift_annotate_inserted/updated  write annotations in the shift's transaction
--   shift_annotation_backfill_batch  one batch: keyset cursor, CTE chain, counted
--   shift_annotation_mark_current    ends a refresh chain of one location
--   shift_annotation_backfill        the whole backfill from psql, a commit per batch


-- The computation. Every value builds on the step before it, and the only time zone
-- work is the two AT TIME ZONE conversions: the rest compares dates and timestamps
-- (integers underneath) and counts whole minutes, no numeric, no text. Immutable and a
-- single SELECT, so the planner inlines it into the calling query. The planner also
-- flattens the steps, substituting each column by its expression wherever it is used:
-- OFFSET 0 keeps the first two steps (the conversions, the costly part) evaluated once
-- a row instead of once for every later reference.
create or replace function shift_annotation_values(
    starts_at timestamptz,
    ends_at timestamptz,
    time_zone text
)
returns table (
    local_starts_at timestamp,
    local_ends_at timestamp,
    local_date date,
    weekday smallint,
    worked_minutes integer,
    crosses_midnight boolean,
    pay_class smallint
)
immutable
parallel safe
language sql
as $$
    with localized as (
        -- step 1: the wall clock at the location, and the absolute time worked
        select starts_at at time zone time_zone as local_starts_at,
               ends_at at time zone time_zone as local_ends_at,
               floor(date_part('epoch', ends_at - starts_at) / 60)::integer
                   as worked_minutes
        offset 0
    ),
    dated as (
        -- step 2: the local calendar day the shift starts on
        select localized.*,
               local_starts_at::date as local_date
          from localized
        offset 0
    ),
    clock as (
        -- step 3: ISO weekday (1970-01-05 was a Monday), midnight crossing, and
        -- whether any of the shift falls in the local night, 22:00 to 06:00
        select dated.*,
               (((local_date - date '1970-01-05') % 7 + 7) % 7 + 1)::smallint
                   as weekday,
               local_ends_at > local_date + 1 as crosses_midnight,
               (local_starts_at < local_date + time '06:00'
                   or local_ends_at > local_date + time '22:00') as at_night
          from dated
    ),
    classified as (
        -- step 4: the pay class, built on the weekday and the night flag
        select clock.*,
               case
                   when weekday >= 6 then 3
                   when at_night then 2
                   else 1
               end::smallint as pay_class
          from clock
    )
    select local_starts_at, local_ends_at, local_date, weekday, worked_minutes,
           crosses_midnight, pay_class
      from classified
$$;

comment on function shift_annotation_values(timestamptz, timestamptz, text) is
    'Compute a shift''s annotation from its start, end and time zone: local start and '
    'end, local date, ISO weekday, whole minutes worked, whether it crosses local '
    'midnight, pay class (1 standard, 2 night, 3 weekend). The one definition used by '
    'the triggers and the backfill.';


-- A CHECK constraint cannot query pg_timezone_names, and a check through a stable
-- function would let a tz database update silently invalidate stored rows (and
-- break a restore). A trigger checks on write only, and reports the violation as
-- the named constraint location_time_zone_known.
create or replace function location_time_zone_check()
returns trigger
language plpgsql
as $$
begin
    if not exists (select from pg_timezone_names where name = new.time_zone) then
        raise exception using
            errcode = 'check_violation',
            message = format(
                'new row for relation "location" violates check constraint '
                '"location_time_zone_known": unknown time zone %L', new.time_zone),
            detail = 'The time zone must be an IANA name listed in pg_timezone_names.',
            schema = 'public',
            table = 'location',
            column = 'time_zone',
            constraint = 'location_time_zone_known';
    end if;
    return new;
end;
$$;

comment on function location_time_zone_check() is
    'Trigger: refuse a location whose time zone is not in pg_timezone_names, as check '
    'violation "location_time_zone_known".';

create or replace trigger location_time_zone_check
    before insert or update of time_zone on location
    for each row
    execute function location_time_zone_check();

comment on trigger location_time_zone_check on location is
    'Enforces the constraint location_time_zone_known.';


-- A new time zone makes every annotation of the location stale. The trigger only
-- bumps the version (constant cost); the refresh chains recompute the rows.
create or replace function location_time_zone_stale()
returns trigger
language plpgsql
as $$
begin
    if new.time_zone is distinct from old.time_zone then
        new.time_zone_version := old.time_zone_version + 1;
    end if;
    return new;
end;
$$;

comment on function location_time_zone_stale() is
    'Trigger: bump time_zone_version when the time zone changes, so that the '
    'location''s annotations read as stale until a refresh chain recomputes them.';

create or replace trigger location_time_zone_stale
    before update of time_zone on location
    for each row
    execute function location_time_zone_stale();

comment on trigger location_time_zone_stale on location is
    'Marks the location''s shift annotations stale on a time zone change.';


-- Triggers on shift: statement-level with transition tables, so that a bulk insert
-- computes its annotations in one statement. The locations are locked FOR SHARE
-- first (in id order), so a concurrent time zone change waits for this transaction
-- or is seen by the next statement: an annotation never carries a version older
-- than the one a refresh chain started from.
create or replace function shift_annotate_inserted()
returns trigger
language plpgsql
as $$
begin
    perform
       from location
      where id in (select location_id from inserted_shifts)
      order by id
        for share;

    insert into shift_annotation as a (
        shift_id, local_starts_at, local_ends_at, computed_at, local_date,
        worked_minutes, time_zone_version, weekday, pay_class, crosses_midnight)
    select n.id, v.local_starts_at, v.local_ends_at, now(), v.local_date,
           v.worked_minutes, l.time_zone_version, v.weekday, v.pay_class,
           v.crosses_midnight
      from inserted_shifts n
      join location l on l.id = n.location_id
     cross join lateral shift_annotation_values(n.starts_at, n.ends_at, l.time_zone) v
        on conflict (shift_id) do update
       set local_starts_at = excluded.local_starts_at,
           local_ends_at = excluded.local_ends_at,
           computed_at = excluded.computed_at,
           local_date = excluded.local_date,
           worked_minutes = excluded.worked_minutes,
           time_zone_version = excluded.time_zone_version,
           weekday = excluded.weekday,
           pay_class = excluded.pay_class,
           crosses_midnight = excluded.crosses_midnight;
    return null;
end;
$$;

comment on function shift_annotate_inserted() is
    'Trigger: annotate the inserted shifts in the inserting transaction.';

create or replace trigger shift_annotate_inserted
    after insert on shift
    referencing new table as inserted_shifts
    for each statement
    execute function shift_annotate_inserted();

comment on trigger shift_annotate_inserted on shift is
    'Writes the annotations of inserted shifts (statement level, one INSERT).';

-- An UPDATE trigger with transition tables cannot list columns; the body keeps
-- only the rows whose location, start or end changed.
create or replace function shift_annotate_updated()
returns trigger
language plpgsql
as $$
begin
    perform
       from location
      where id in (
            select n.location_id
              from new_shifts n
              join old_shifts o on o.id = n.id
             where (n.location_id, n.starts_at, n.ends_at)
                   is distinct from (o.location_id, o.starts_at, o.ends_at))
      order by id
        for share;

    insert into shift_annotation as a (
        shift_id, local_starts_at, local_ends_at, computed_at, local_date,
        worked_minutes, time_zone_version, weekday, pay_class, crosses_midnight)
    select n.id, v.local_starts_at, v.local_ends_at, now(), v.local_date,
           v.worked_minutes, l.time_zone_version, v.weekday, v.pay_class,
           v.crosses_midnight
      from new_shifts n
      join old_shifts o on o.id = n.id
      join location l on l.id = n.location_id
     cross join lateral shift_annotation_values(n.starts_at, n.ends_at, l.time_zone) v
     where (n.location_id, n.starts_at, n.ends_at)
           is distinct from (o.location_id, o.starts_at, o.ends_at)
        on conflict (shift_id) do update
       set local_starts_at = excluded.local_starts_at,
           local_ends_at = excluded.local_ends_at,
           computed_at = excluded.computed_at,
           local_date = excluded.local_date,
           worked_minutes = excluded.worked_minutes,
           time_zone_version = excluded.time_zone_version,
           weekday = excluded.weekday,
           pay_class = excluded.pay_class,
           crosses_midnight = excluded.crosses_midnight;
    return null;
end;
$$;

comment on function shift_annotate_updated() is
    'Trigger: refresh the annotations of shifts whose location, start or end changed.';

create or replace trigger shift_annotate_updated
    after update on shift
    referencing old table as old_shifts new table as new_shifts
    for each statement
    execute function shift_annotate_updated();

comment on trigger shift_annotate_updated on shift is
    'Refreshes annotations when location_id, starts_at or ends_at change.';


-- One batch, in one of two statements, each a CTE chain ending in INSERT ... RETURNING.
--
-- The careful statement (always for a refresh chain, and the fallback):
--   keys      the next batch_size shift ids after the cursor (the keyset walk:
--             over the primary key, or over (location_id, id) for one location)
--   locked    those shifts, locked FOR SHARE: their latest committed values, and
--             no concurrent change until this transaction ends
--   zones     their locations, locked FOR SHARE (time zone and its version)
--   computed  shift_annotation_values over the locked rows
--   written   INSERT ... ON CONFLICT: a missing row is inserted, a stale one
--             (older time zone version) updated, a current one left alone
-- The lock is taken in its own step, after the LIMIT: a shift deleted meanwhile is
-- dropped from locked, never from keys, so it cannot make a full batch look short.
--
-- The optimistic statement (a range chain tries it first): the same steps without
-- the shift locks and with a plain INSERT. In a range never annotated, the usual
-- case of a backfill, it does the same work as a single INSERT ... SELECT does per
-- row; the speculative insertion of ON CONFLICT and the extra row lock cost this
-- backfill about a fifth more (docs/performance.md). It fails, as a whole and
-- inside a subtransaction, when any row of the batch already has an annotation
-- (unique_violation: the trigger wrote it, or an earlier run) or its shift was
-- deleted meanwhile (foreign_key_violation, from the check that locks the shift
-- itself); the careful statement then does the batch. A concurrent update of a
-- shift is safe either way: its trigger's upsert waits for this batch's row, or
-- this batch's insert meets the trigger's row.
--
-- Rows examined (keys) and rows written are counted apart: a chain continues while
-- examined = batch_size, whatever was written, and the cursor (last_id) always moves
-- forward, so rows needing no write neither stop the chain nor hold it in place.
-- PL/pgSQL rather than SQL so that each statement's plan is cached for the session
-- (planning the chain costs about 2 ms, a tenth of a batch of 1000).
create or replace function shift_annotation_backfill_batch(
    after_id bigint,
    batch_size integer,
    until_id bigint default null,
    location_id bigint default null
)
returns table (examined integer, written integer, last_id bigint)
volatile
language plpgsql
as $$
declare
    done boolean := false;
begin
    if batch_size is null or batch_size < 1 then
        raise exception 'batch size must be at least 1, got %',
            coalesce(batch_size::text, 'null')
            using errcode = 'invalid_parameter_value';
    end if;
    if after_id is null then
        raise exception 'after_id must not be null (0 starts from the first shift)'
            using errcode = 'null_value_not_allowed';
    end if;

    if shift_annotation_backfill_batch.location_id is null then
        begin
            with keys as (
                select s.id, s.location_id, s.starts_at, s.ends_at
                  from shift s
                 where s.id > after_id
                   and s.id <= coalesce(until_id, 9223372036854775807)
                 order by s.id
                 limit batch_size
            ),
            zones as (
                select l.id, l.time_zone, l.time_zone_version
                  from location l
                 where l.id in (select k.location_id from keys k)
                 order by l.id
                   for share
            ),
            computed as (
                select k.id as shift_id, v.*, z.time_zone_version
                  from keys k
                  join zones z on z.id = k.location_id
                 cross join lateral
                       shift_annotation_values(k.starts_at, k.ends_at, z.time_zone) v
            ),
            inserted as (
                insert into shift_annotation (
                    shift_id, local_starts_at, local_ends_at, computed_at,
                    local_date, worked_minutes, time_zone_version, weekday,
                    pay_class, crosses_midnight)
                select c.shift_id, c.local_starts_at, c.local_ends_at, now(),
                       c.local_date, c.worked_minutes, c.time_zone_version,
                       c.weekday, c.pay_class, c.crosses_midnight
                  from computed c
                returning 1
            ),
            seen as (
                select count(*)::integer as n, max(k.id) as last from keys k
            )
            select seen.n, (select count(*)::integer from inserted), seen.last
              into examined, written, last_id
              from seen;
            done := true;
        exception
            when unique_violation or foreign_key_violation then
                null;  -- some row is annotated already, or gone: the careful way
        end;
        -- Returned only now: a foreign key check fails at the end of the statement,
        -- after RETURN QUERY would already have added its row to the result.
        if done then
            return next;
            return;
        end if;
    end if;

    return query
    with keys as (
        (select s.id
           from shift s
          where shift_annotation_backfill_batch.location_id is null
            and s.id > after_id
            and s.id <= coalesce(until_id, 9223372036854775807)
          order by s.id
          limit batch_size)
        union all
        (select s.id
           from shift s
          where s.location_id = shift_annotation_backfill_batch.location_id
            and s.id > after_id
            and s.id <= coalesce(until_id, 9223372036854775807)
          order by s.location_id, s.id
          limit batch_size)
    ),
    locked as (
        select s.id, s.location_id, s.starts_at, s.ends_at
          from shift s
         where s.id in (select k.id from keys k)
           for share
    ),
    zones as (
        select l.id, l.time_zone, l.time_zone_version
          from location l
         where l.id in (select locked.location_id from locked)
         order by l.id
           for share
    ),
    computed as (
        select s.id as shift_id, v.*, z.time_zone_version
          from locked s
          join zones z on z.id = s.location_id
         cross join lateral shift_annotation_values(s.starts_at, s.ends_at, z.time_zone) v
    ),
    written as (
        insert into shift_annotation as a (
            shift_id, local_starts_at, local_ends_at, computed_at, local_date,
            worked_minutes, time_zone_version, weekday, pay_class, crosses_midnight)
        select c.shift_id, c.local_starts_at, c.local_ends_at, now(), c.local_date,
               c.worked_minutes, c.time_zone_version, c.weekday, c.pay_class,
               c.crosses_midnight
          from computed c
            on conflict (shift_id) do update
           set local_starts_at = excluded.local_starts_at,
               local_ends_at = excluded.local_ends_at,
               computed_at = excluded.computed_at,
               local_date = excluded.local_date,
               worked_minutes = excluded.worked_minutes,
               time_zone_version = excluded.time_zone_version,
               weekday = excluded.weekday,
               pay_class = excluded.pay_class,
               crosses_midnight = excluded.crosses_midnight
         where a.time_zone_version <> excluded.time_zone_version
        returning 1
    ),
    seen as (
        select count(*)::integer as n, max(k.id) as last from keys k
    )
    select seen.n, (select count(*)::integer from written), seen.last
      from seen;
end;
$$;

comment on function shift_annotation_backfill_batch(bigint, integer, bigint, bigint) is
    'Annotate the next batch_size shifts with id > after_id (and <= until_id; only '
    'location_id''s shifts when given): insert missing annotations, update stale '
    'ones. Returns rows examined, rows written and the last id examined (the next '
    'cursor, null when nothing was left). Continue while examined = batch_size. '
    'A range first tries a plain INSERT and, when a row is annotated already, does '
    'the batch with locks and ON CONFLICT instead. batch_size below 1 is an error. '
    'Commit policy is the caller''s: the jobs and shift_annotation_backfill commit '
    'each batch with synchronous_commit off (derived data, redone after a crash).';


create or replace function shift_annotation_mark_current(
    location_id bigint,
    version integer
)
returns void
volatile
language sql
as $$
    update location
       set annotations_version = greatest(annotations_version, version)
     where id = shift_annotation_mark_current.location_id
       and annotations_version < version
$$;

comment on function shift_annotation_mark_current(bigint, integer) is
    'Record that every annotation of the location is computed under at least this '
    'time zone version (called when a refresh chain started at that version ends).';


create or replace procedure shift_annotation_backfill(
    batch_size integer default 1000,
    location_id bigint default null
)
language plpgsql
as $$
declare
    cursor_id bigint := 0;
    version integer;
    batch record;
    batches bigint := 0;
    examined_total bigint := 0;
    written_total bigint := 0;
    started timestamptz := clock_timestamp();
    last_notice timestamptz := clock_timestamp();
begin
    if batch_size is null or batch_size < 1 then
        raise exception 'batch size must be at least 1, got %', coalesce(batch_size::text, 'null')
            using errcode = 'invalid_parameter_value';
    end if;
    if shift_annotation_backfill.location_id is not null then
        select l.time_zone_version into version
          from location l
         where l.id = shift_annotation_backfill.location_id;
        if not found then
            raise exception 'unknown location %', shift_annotation_backfill.location_id
                using errcode = 'no_data_found';
        end if;
    end if;
    commit;

    loop
        -- Derived data: a batch lost in a crash is redone by the next CALL, so each
        -- batch commits without waiting for its WAL flush (this transaction only).
        perform set_config('synchronous_commit', 'off', true);
        select * into batch
          from shift_annotation_backfill_batch(
                cursor_id, batch_size, null, shift_annotation_backfill.location_id);
        batches := batches + 1;
        examined_total := examined_total + batch.examined;
        written_total := written_total + batch.written;
        cursor_id := coalesce(batch.last_id, cursor_id);
        commit;
        exit when batch.examined < batch_size;
        if clock_timestamp() - last_notice >= interval '1 second' then
            raise notice 'shift annotations: % batches, % examined, % written, at id %',
                batches, examined_total, written_total, cursor_id;
            last_notice := clock_timestamp();
        end if;
    end loop;

    if version is not null then
        perform shift_annotation_mark_current(shift_annotation_backfill.location_id, version);
        commit;
    end if;
    raise notice 'shift annotations done: % batches, % examined, % written in %',
        batches, examined_total, written_total,
        date_trunc('millisecond', clock_timestamp() - started);
end;
$$;

comment on procedure shift_annotation_backfill(integer, bigint) is
    'Run the whole backfill from psql (CALL, outside a transaction block), committing '
    'after each batch, with a NOTICE of progress every second. With location_id, '
    'refresh that location''s annotations and then mark them current.';
