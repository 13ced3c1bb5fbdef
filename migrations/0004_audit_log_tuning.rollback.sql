alter table audit_log add constraint audit_log_images_check check (
    case op
        when 'insert' then old_row is null and new_row is not null
        when 'update' then old_row is not null and new_row is not null
        when 'delete' then old_row is not null and new_row is null
        else old_row is null and new_row is null and row_key is null
    end
);
