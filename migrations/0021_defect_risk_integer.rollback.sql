-- Back to the text ratings of 0020, through the same guarded conversion.

drop index defect_risk_raised_at_idx;

alter table defect drop constraint defect_risk_range;

select old_value, new_value, row_count
  from change_column_type('defect', 'risk', 'text',
                          '{"3": "HIGH", "2": "MEDIUM", "1": "LOW"}');

comment on column defect.risk is 'Risk rating as text: HIGH, MEDIUM or LOW.';
