-- Audit the tables that users edit and that later migrations added: location and
-- shift (0010_shifts), defect (0020_defect). shift_annotation is computed from shift
-- by triggers and a backfill, never edited, so it is left out (its shift is audited).
-- depends: 0010_shifts 0020_defect

do $$
begin
    perform audit_table('location');
    perform audit_table('shift');
    perform audit_table('defect');
end
$$;
