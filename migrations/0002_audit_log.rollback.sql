drop table instance_repr;
drop table audit_log;
drop function if exists audit_table(regclass, boolean);
drop function if exists audit_capture_insert();
drop function if exists audit_capture_update();
drop function if exists audit_capture_delete();
drop function if exists audit_capture_truncate();
drop function if exists audit_refuse_change();
drop function if exists audit_horizon();
