-- Risk ratings become integers (3 high, 2 medium, 1 low) so they sort and compare.
--
-- change_column_type (procedures/type_change.sql) checks every stored rating first:
-- a value outside the mapping, in any case or with stray spaces, stops this migration
-- with the values and their counts listed, and nothing changes. Fix those rows by
-- hand (docs/type-changes.md) and migrate again.

select old_value, new_value, row_count
  from change_column_type('defect', 'risk', 'integer',
                          '{"HIGH": 3, "MEDIUM": 2, "LOW": 1}');

alter table defect
    add constraint defect_risk_range check (risk between 1 and 3);

create index defect_risk_raised_at_idx on defect (risk desc, raised_at desc, id desc);

comment on column defect.risk is 'Risk rating: 3 high, 2 medium, 1 low.';
