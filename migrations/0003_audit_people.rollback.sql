drop index audit_log_address_old_person_idx;
drop index audit_log_address_new_person_idx;
select audit_table('address', false);
select audit_table('person', false);
