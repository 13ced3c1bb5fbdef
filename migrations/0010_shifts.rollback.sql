-- Drops the shift tables and the routines of procedures/shifts*.sql that use them
-- (procedures are re-created by the next migrate).

drop procedure if exists shift_annotation_backfill(integer, bigint);
drop function if exists shift_annotation_backfill_batch(bigint, integer, bigint, bigint);
drop function if exists shift_annotation_mark_current(bigint, integer);
drop function if exists shift_seed(integer, boolean);
drop table shift_annotation;
drop table shift;
drop table location;
drop function if exists shift_annotate_inserted();
drop function if exists shift_annotate_updated();
drop function if exists location_time_zone_check();
drop function if exists location_time_zone_stale();
drop function if exists shift_annotation_values(timestamptz, timestamptz, text);
