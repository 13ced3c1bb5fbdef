-- Audit person and address (audit_table() comes from procedures/audit.sql), and index
-- the audit rows of addresses by the person they belong to, for a person's history:
-- an address row names its person in its old image, its new image, or both (moved).

do $$
begin
    perform audit_table('person');
    perform audit_table('address');
end
$$;

create index audit_log_address_new_person_idx
    on audit_log (((new_row ->> 'person_id')::bigint))
    where table_name = 'address';

create index audit_log_address_old_person_idx
    on audit_log (((old_row ->> 'person_id')::bigint))
    where table_name = 'address';
