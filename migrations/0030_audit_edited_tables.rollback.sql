do $$
begin
    perform audit_table('defect', false);
    perform audit_table('shift', false);
    perform audit_table('location', false);
end
$$;
