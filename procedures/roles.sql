-- Least privilege: what the web app and the workers may do.
--
-- Migrations run as the owner of the schema. The web app and the workers can run as a
-- login role that has only data privileges, granted (and re-granted after each migrate,
-- for new tables) by grant_app_privileges(). The audit log is append-only for it.

create or replace function grant_app_privileges(app_role name)
    returns integer
    volatile
    language plpgsql
    set search_path = pg_catalog, public
    as $$
declare
    relation record;
    granted integer := 0;
    schema_name name := 'public';
begin
    if not exists (select from pg_roles where rolname = app_role) then
        raise exception 'role "%" does not exist', app_role
            using errcode = 'undefined_object',
                  hint = 'create it first: create role ... login password ...';
    end if;
    if exists (select from pg_roles where rolname = app_role and rolsuper) then
        raise exception 'role "%" is a superuser; an app role must not be', app_role
            using errcode = 'invalid_parameter_value';
    end if;

    execute format('grant usage on schema %I to %I', schema_name, app_role);

    for relation in
        select c.oid::regclass as name, c.relname
          from pg_class c
         where c.relnamespace = schema_name::regnamespace
           and c.relkind in ('r', 'p', 'v')
         order by c.relname
    loop
        if relation.relname like '\_yoyo%' or relation.relname = 'yoyo_lock' then
            continue;  -- migration bookkeeping: the owner's alone
        elsif relation.relname = 'audit_log' then
            execute format('grant select, insert on %s to %I', relation.name, app_role);
        else
            execute format(
                'grant select, insert, update, delete on %s to %I',
                relation.name, app_role
            );
        end if;
        granted := granted + 1;
    end loop;

    execute format(
        'grant usage, select on all sequences in schema %I to %I', schema_name, app_role
    );
    return granted;
end;
$$;

comment on function grant_app_privileges(name) is
'Grant a login role the data privileges the web app and the workers need on every table
of the public schema: select, insert, update, delete; on audit_log only select and
insert (append-only); nothing on the migration bookkeeping tables, and no DDL.
Returns how many tables and views it granted. Re-run after each migrate so new tables
are covered (`pgzen grant ROLE` does both). Refuses a missing or superuser role.';
