-- requires: 0010_shifts
--
-- Demo and benchmark data for shifts, generated in SQL.

create or replace function shift_seed(
    shift_count integer,
    annotate boolean default false
)
returns bigint
volatile
language plpgsql
as $$
-- WARNING: without annotate, the insert trigger is disabled for the load; ALTER
-- TABLE holds an ACCESS EXCLUSIVE lock on shift until the calling transaction ends.
declare
    inserted bigint;
begin
    if shift_count is null or shift_count < 0 then
        raise exception 'shift count must be 0 or more, got %',
            coalesce(shift_count::text, 'null')
            using errcode = 'invalid_parameter_value';
    end if;
    if shift_count = 0 then
        return 0;
    end if;
    if not exists (select from location) then
        raise exception 'no location to seed shifts at: create a location first'
            using errcode = 'no_data_found';
    end if;
    if not annotate then
        alter table shift disable trigger shift_annotate_inserted;
    end if;

    -- Local start times as people plan them: mostly early, day and late starts on
    -- the quarter hour, over the last two years (so across daylight-saving changes),
    -- converted to absolute time in each location's zone.
    with locations as (
        select array_agg(id order by id) as ids,
               array_agg(time_zone order by id) as zones,
               count(*)::integer as n
          from location
    ),
    drawn as (
        select 1 + floor(random() * locations.n)::integer as pick,
               current_date - 730 + floor(random() * 760)::integer as day,
               random() as kind,
               floor(random() * 9)::integer as quarter,
               floor(random() * 33)::integer as extra_quarters
          from locations, generate_series(1, shift_count)
    ),
    planned as (
        select d.pick,
               d.day + case
                   when d.kind < 0.45 then time '06:00' + d.quarter * interval '15 min'
                   when d.kind < 0.75 then time '13:00' + d.quarter * interval '15 min'
                   when d.kind < 0.95 then time '21:00' + d.quarter * interval '15 min'
                   else time '00:00' + d.extra_quarters * 3 * interval '15 min'
               end as local_start,
               interval '4 hours' + d.extra_quarters * interval '15 min' as length
          from drawn d
    )
    insert into shift (location_id, starts_at, ends_at)
    select l.ids[p.pick],
           p.local_start at time zone l.zones[p.pick],
           p.local_start at time zone l.zones[p.pick] + p.length
      from planned p, locations l;
    get diagnostics inserted = row_count;

    if not annotate then
        alter table shift enable trigger shift_annotate_inserted;
    end if;
    -- Fresh statistics, so that the first batches plan a keyset walk over the
    -- primary key rather than a scan of what looks like an empty table.
    analyze shift;
    return inserted;
end;
$$;

comment on function shift_seed(integer, boolean) is
    'Insert shift_count realistic shifts at random existing locations (local starts '
    'on the quarter hour over the last two years, 4 to 12 hours long). Unless '
    'annotate, the insert trigger is disabled for the load, leaving the annotations '
    'to the backfill. Returns the number of shifts inserted.';
