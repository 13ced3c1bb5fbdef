drop index audit_log_address_old_person_idx;
drop index audit_log_address_new_person_idx;
do $$
begin
    perform audit_table('address', false);
    perform audit_table('person', false);
end
$$;
