-- Guarded column type changes: a column's values are converted through an explicit
-- mapping, and nothing is changed when any stored value is not in it.
--
--   change_column_type(...)             in place: one ALTER TABLE ... USING CASE
--   type_change_online_start(...)       online: a new column kept in step by a trigger
--   type_change_online_backfill(...)    online: one keyset batch of the backfill
--   type_change_online_finish(...)      online: the short swap
--   type_change_online_abort(...)       online: undo start
--   type_change_online_pending()        online changes in progress
--
-- The mapping is a JSON object from old values (as text) to new values:
-- '{"HIGH": 3, "MEDIUM": 2, "LOW": 1}'. It is json, not jsonb, so that a key given twice
-- is seen and refused (jsonb keeps the last one silently). docs/type-changes.md has
-- the full contract: case and spaces, NULLs, many-to-one mappings, lock_timeout.
--
-- The target type is text, so that it keeps its modifier (varchar(3), numeric(5,2)):
-- a regtype argument would drop it without a word. type_change_type() checks that it
-- is exactly one type name and turns it into format_type()'s canonical spelling; only
-- that reaches dynamic SQL (on PostgreSQL 15 and 16, the checked text itself also ends
-- one probe statement). A mapped value the modifier would cut or round is refused.
--
-- Every identifier reaches dynamic SQL through regclass, format('%I') or format_type();
-- every value through format('%L') or a bound parameter.

-- Earlier versions took the target type as regtype; create or replace cannot change a
-- parameter's type, and the old functions would linger as overloads.
drop function if exists change_column_type(regclass, name, regtype, json, boolean,
                                           boolean, boolean, interval);
drop function if exists type_change_online_start(regclass, name, regtype, json, name,
                                                 boolean, boolean, interval);
drop function if exists type_change_check_values(regclass, name, json, regtype, boolean,
                                                 boolean);
drop function if exists type_change_case(text, json, regtype, boolean, boolean, text,
                                         name);
drop function if exists type_change_mapping(json, regtype, boolean, boolean);


-- A target type as written by a user, with its modifier, in canonical form. No
-- search_path of its own: the name is looked up, and format_type() spells it, on the
-- caller's path, the one the caller's dynamic SQL then runs on.
create or replace function type_change_type(type_name text)
returns text
volatile
language plpgsql
as $$
declare
    v_type regtype;
    v_typmod integer;
begin
    if type_name is null then
        raise exception 'target type must not be null'
            using errcode = 'invalid_parameter_value';
    end if;
    -- regtype's input also takes an OID ('23', or '-' for none), which is no name.
    if type_name ~ '^([0-9]+|-)$' then
        raise exception 'invalid target type %: a type name is expected',
            quote_literal(type_name) using errcode = 'syntax_error';
    end if;
    -- regtype's input parses the text as exactly one type name, or raises: a type that
    -- does not exist (42704), or anything else, such as a second statement (42601).
    begin
        v_type := type_name::regtype;
    exception when syntax_error then
        raise exception 'invalid target type %: %', quote_literal(type_name), sqlerrm
            using errcode = 'syntax_error';
    end;

    -- Without a modifier the text is spelt as format_type spells it with none; this
    -- spares the probe below for the common case ('integer', 'text').
    if type_name = format_type(v_type, -1) then
        return type_name;
    end if;
    if current_setting('server_version_num')::integer >= 170000 then
        execute 'select to_regtypemod($1)' into v_typmod using type_name;
    else
        -- Before PostgreSQL 17 nothing returns the modifier of a type name, but a
        -- view's column keeps it. The text is a single type name (checked just above),
        -- and it ends the statement, so nothing can follow it.
        execute 'create or replace temporary view type_change_type_probe as select null::'
                || type_name;
        select atttypmod into v_typmod from pg_attribute
         where attrelid = 'pg_temp.type_change_type_probe'::regclass and attnum = 1;
        drop view pg_temp.type_change_type_probe;
    end if;
    return format_type(v_type, v_typmod);
end;
$$;

comment on function type_change_type(text) is
'The canonical spelling (format_type) of a target type written as text, keeping its '
'modifier: type_change_type(''varchar(3)'') is ''character varying(3)''. Raises for a '
'NULL (22023), a type that does not exist (42704), or text that is not one type name '
'(42601), such as an OID or a second statement.';


-- The target type stripped of every modifier: a domain becomes its base type, an array
-- an array of its stripped element type. A value cast to both must compare equal, or
-- a modifier cut or rounded it.
create or replace function type_change_plain_type(type_oid regtype)
returns regtype
stable
strict
language plpgsql
as $$
declare
    v_type pg_type;
    v_element regtype;
begin
    select * into strict v_type from pg_type where oid = type_oid;
    if v_type.typtype = 'd' then
        return type_change_plain_type(v_type.typbasetype);
    end if;
    -- A true array is its element type's typarray (int2vector, say, is not).
    if v_type.typelem <> 0
       and (select typarray from pg_type where oid = v_type.typelem) = type_oid then
        v_element := type_change_plain_type(v_type.typelem);
        return coalesce((select nullif(typarray, 0)::regtype from pg_type
                          where oid = v_element), type_oid);
    end if;
    return type_oid;
end;
$$;

comment on function type_change_plain_type(regtype) is
'The type a type change checks modifiers against: a domain''s base type and an '
'array''s element type, each stripped of its modifier and constraints.';


-- The ELSE of every generated CASE: a value the checks did not expect raises instead of
-- becoming NULL.
create or replace function type_change_unmapped(
    table_name text,
    column_name text,
    value text
)
returns text
volatile
language plpgsql
as $$
begin
    raise exception 'value % in column % of table % is not in the type change mapping',
        quote_nullable(value), quote_ident(column_name), table_name
        using errcode = 'check_violation',
              hint = 'Nothing was written; add the value to the mapping or fix the row.';
end;
$$;

comment on function type_change_unmapped(text, text, text) is
'Raise for a value the type change mapping does not list. The ELSE branch of the '
'CASE generated by change_column_type and the online type change triggers.';


-- The expression an old value is matched by: its text form, or with fold its text
-- form trimmed of surrounding whitespace and upper-cased.
create or replace function type_change_match_expr(expr text, fold boolean)
returns text
immutable
language sql
as $$
    select case
        when fold then format('upper(btrim((%s)::text, E'' \t\r\n''))', expr)
        else format('(%s)::text', expr)
    end
$$;

comment on function type_change_match_expr(text, boolean) is
'SQL text matching an old value for a type change: its text form, or with fold its '
'text form trimmed of spaces, tabs and line breaks and upper-cased.';


-- The checked column: the table is a table, the column exists and carries no default.
create or replace function type_change_column(table_name regclass, column_name name)
returns pg_attribute
stable
language plpgsql
as $$
declare
    v_att pg_attribute;
    v_kind "char";
begin
    if table_name is null then
        raise exception 'table must not be null' using errcode = 'invalid_parameter_value';
    end if;
    if column_name is null then
        raise exception 'column must not be null' using errcode = 'invalid_parameter_value';
    end if;

    select relkind into v_kind from pg_class where oid = table_name;
    if v_kind is null then
        raise exception 'table with oid % does not exist', table_name::oid
            using errcode = 'undefined_table';
    end if;
    if v_kind not in ('r', 'p') then
        raise exception '% is not a table', table_name
            using errcode = 'wrong_object_type';
    end if;

    select * into v_att
      from pg_attribute
     where attrelid = table_name and attname = column_name
       and attnum > 0 and not attisdropped;
    if not found then
        raise exception 'column % of table % does not exist',
            quote_ident(column_name), table_name
            using errcode = 'undefined_column';
    end if;

    if v_att.atthasdef then
        raise exception 'column % of table % has a default',
            quote_ident(column_name), table_name
            using errcode = 'object_not_in_prerequisite_state',
                  detail = format('default: %s',
                      pg_get_expr((select adbin from pg_attrdef
                                    where adrelid = table_name
                                      and adnum = v_att.attnum), table_name)),
                  hint = 'Drop the default first (alter table ... alter column ... '
                         'drop default) and set the new one after the change.';
    end if;
    return v_att;
end;
$$;

comment on function type_change_column(regclass, name) is
'Return the pg_attribute row of a column about to change type, or raise a clear error: '
'table or column null or missing, not a table, or the column has a default.';


-- The validated mapping, one row a key: what an old value is matched against, the key
-- as given, and the new value's canonical text in the target type.
create or replace function type_change_mapping(
    mapping json,
    new_type text,
    fold boolean,
    allow_many_to_one boolean
)
returns table (match_value text, old_value text, new_value text)
volatile
language plpgsql
as $$
declare
    v_type text := type_change_type(new_type);
    v_plain text := format_type(type_change_plain_type(v_type::regtype), -1);
    v_key text;
    v_value json;
    v_text text;
    v_canonical text;
    v_same boolean;
    v_match text;
    v_seen_match jsonb := '{}';
    v_seen_new jsonb := '{}';
begin
    if mapping is null or json_typeof(mapping) <> 'object' then
        raise exception 'mapping must be a JSON object of old value to new value, got %',
            coalesce(mapping::text, 'NULL')
            using errcode = 'invalid_parameter_value';
    end if;
    if not exists (select from json_each(mapping)) then
        raise exception 'mapping must not be empty'
            using errcode = 'invalid_parameter_value';
    end if;

    for v_key, v_value in select key, value from json_each(mapping) loop
        v_match := case when fold then upper(btrim(v_key, E' \t\r\n')) else v_key end;
        if v_seen_match ? v_match then
            raise exception 'mapping lists % twice%', quote_literal(v_match),
                case when fold then ' (after trimming and case folding)' else '' end
                using errcode = 'invalid_parameter_value',
                      detail = format('keys %s and %s',
                          quote_literal(v_seen_match ->> v_match),
                          quote_literal(v_key));
        end if;
        v_seen_match := v_seen_match || jsonb_build_object(v_match, v_key);

        if json_typeof(v_value) = 'null' then
            raise exception 'mapping sends % to null, which would lose it',
                quote_literal(v_key)
                using errcode = 'invalid_parameter_value',
                      hint = 'NULLs are handled by keep_nulls, not by the mapping.';
        end if;
        v_text := v_value #>> '{}';

        -- The target type must hold the value: cast it now, before touching the table.
        begin
            execute format('select (%L::%s)::text', v_text, v_type) into v_canonical;
        exception when others then
            raise exception 'mapping value % for % cannot be stored as %: %',
                quote_literal(v_text), quote_literal(v_key), v_type, sqlerrm
                using errcode = 'invalid_parameter_value';
        end;
        if v_canonical is null then
            raise exception 'mapping value % for % becomes null as %',
                quote_literal(v_text), quote_literal(v_key), v_type
                using errcode = 'invalid_parameter_value';
        end if;

        -- A cast to a type with a modifier cuts and rounds without a word
        -- ('abcd'::varchar(3) is 'abc'), also through a domain or an array's elements:
        -- the value must survive it unchanged.
        if v_type <> v_plain then
            begin
                execute format('select %1$L::%2$s = (%1$L::%3$s)::%2$s',
                               v_text, v_plain, v_type) into v_same;
            exception when undefined_function then  -- a type without equality
                execute format('select (%1$L::%2$s)::text = (%1$L::%3$s)::text',
                               v_text, v_plain, v_type) into v_same;
            end;
            if not v_same then
                raise exception 'mapping value % for % would be stored as % in %',
                    quote_literal(v_text), quote_literal(v_key),
                    quote_literal(v_canonical), v_type
                    using errcode = 'invalid_parameter_value',
                          hint = 'A type modifier may not cut or round a mapped value.';
            end if;
        end if;

        -- Two old values landing on one new value is usually a typo; it also makes
        -- the change impossible to reverse.
        if v_seen_new ? v_canonical and not allow_many_to_one then
            raise exception 'mapping sends % and % both to %',
                quote_literal(v_seen_new ->> v_canonical), quote_literal(v_key),
                v_canonical
                using errcode = 'invalid_parameter_value',
                      hint = 'Pass allow_many_to_one => true if that is intended.';
        end if;
        v_seen_new := v_seen_new || jsonb_build_object(v_canonical, v_key);

        match_value := v_match;
        old_value := v_key;
        new_value := v_canonical;
        return next;
    end loop;
end;
$$;

comment on function type_change_mapping(json, text, boolean, boolean) is
'Validate a type change mapping and return it row by row (match value, key, new value '
'as canonical text). Raises for a non-object or empty mapping, a key given twice, a '
'null new value, a value the target type cannot hold or whose modifier would cut or '
'round it, and (unless allowed) two keys with one new value.';


-- The CASE converting old values (matched as match_expr) into new_type. Its ELSE
-- raises; with keep_nulls a NULL stays NULL, otherwise it raises too.
create or replace function type_change_case(
    column_expr text,
    mapping json,
    new_type text,
    fold boolean,
    keep_nulls boolean,
    table_label text,
    column_name name
)
returns text
volatile
language plpgsql
as $$
declare
    v_type text := type_change_type(new_type);
    v_whens text;
    v_case text;
begin
    select string_agg(format('when %L then %L::%s', m.match_value, m.new_value,
                             v_type), ' ' order by m.match_value)
      into v_whens
      from type_change_mapping(mapping, v_type, fold, true) as m;

    v_case := format(
        'case %s %s else public.type_change_unmapped(%L, %L, (%s)::text)::%s end',
        type_change_match_expr(column_expr, fold), v_whens,
        table_label, column_name, column_expr, v_type);
    if keep_nulls then
        v_case := format('case when (%s) is null then null::%s else %s end',
                         column_expr, v_type, v_case);
    end if;
    -- Parenthesised: PL/pgSQL ends an IF condition at the first THEN it meets.
    return '(' || v_case || ')';
end;
$$;

comment on function type_change_case(text, json, text, boolean, boolean, text, name)
is 'SQL text of the CASE converting a column through a type change mapping; its ELSE '
   'raises through type_change_unmapped.';


-- Check every stored value against the mapping; raise listing each unmapped value with
-- its count. Returns the row count per key (zero for keys no row has).
create or replace function type_change_check_values(
    table_name regclass,
    column_name name,
    mapping json,
    new_type text,
    fold boolean,
    keep_nulls boolean
)
returns table (old_value text, new_value text, row_count bigint)
volatile
language plpgsql
as $$
declare
    v_keys text[];
    v_old text[];
    v_new text[];
    v_counts jsonb := '{}';
    v_unmapped text[] := '{}';
    v_unmapped_rows bigint := 0;
    v_distinct bigint := 0;
    v_row record;
    v_has_null boolean := false;
    v_listed constant integer := 50;
begin
    select array_agg(m.match_value), array_agg(m.old_value), array_agg(m.new_value)
      into v_keys, v_old, v_new
      from type_change_mapping(mapping, new_type, fold, true) as m;

    for v_row in execute format(
        'select raw, matched, count(*) as n,'
        '       (matched is not null and matched = any($1))'
        '       or (raw is null and $2) as ok'
        '  from (select %1$I::text as raw, %2$s as matched from %3$s) as s'
        ' group by raw, matched'
        ' order by ok, n desc, raw',
        column_name, type_change_match_expr(quote_ident(column_name), fold),
        table_name)
        using v_keys, keep_nulls
    loop
        if v_row.ok then
            if v_row.raw is not null then
                v_counts := v_counts || jsonb_build_object(v_row.matched,
                    coalesce((v_counts ->> v_row.matched)::bigint, 0) + v_row.n);
            end if;
        else
            v_distinct := v_distinct + 1;
            v_has_null := v_has_null or v_row.raw is null;
            v_unmapped_rows := v_unmapped_rows + v_row.n;
            if v_distinct <= v_listed then
                v_unmapped := v_unmapped || format('%s (%s %s)',
                    quote_nullable(v_row.raw), v_row.n,
                    case when v_row.n = 1 then 'row' else 'rows' end);
            end if;
        end if;
    end loop;

    -- The list goes in the message itself: a migration runner may show only that.
    if v_distinct > 0 then
        raise exception '% % in column % of table % not in the mapping: %; '
                        'nothing was changed',
            v_distinct, case when v_distinct = 1 then 'value' else 'values' end,
            quote_ident(column_name), table_name,
            array_to_string(v_unmapped, ', ')
            || case when v_distinct > v_listed
                    then format(' and %s more', v_distinct - v_listed) else '' end
            using errcode = 'check_violation',
                  detail = format('%s unmapped %s in all', v_unmapped_rows,
                                  case when v_unmapped_rows = 1 then 'row'
                                       else 'rows' end),
                  hint = case when v_has_null
                              then 'NULLs are refused unless keep_nulls => true. '
                              else '' end
                         || 'Add the values to the mapping, or update those rows '
                         || 'first; fold_case_and_space => true matches case and '
                         || 'surrounding whitespace loosely.';
    end if;

    return query
        select m.old_value, m.new_value,
               coalesce((v_counts ->> m.match_value)::bigint, 0)
          from unnest(v_keys, v_old, v_new) as m (match_value, old_value, new_value)
         order by m.old_value;
end;
$$;

comment on function type_change_check_values(regclass, name, json, text, boolean, boolean)
is 'Check every value of a column against a type change mapping. Raises (SQLSTATE '
   '23514) listing each unmapped value with its row count; otherwise returns the rows '
   'per key.';


-- Set lock_timeout for the rest of the transaction (the public functions restore it
-- on exit through their SET clause), refusing a wait without limit.
create or replace function type_change_set_lock_timeout(lock_timeout interval)
returns void
volatile
language plpgsql
as $$
begin
    if lock_timeout is null or lock_timeout <= interval '0' then
        raise exception 'lock_timeout must be a positive interval, got %',
            coalesce(lock_timeout::text, 'NULL')
            using errcode = 'invalid_parameter_value',
                  hint = 'Waiting without a limit queues every later query on the '
                         'table behind this one.';
    end if;
    perform set_config('lock_timeout',
        ceil(extract(epoch from lock_timeout) * 1000)::bigint || 'ms', true);
end;
$$;

comment on function type_change_set_lock_timeout(interval) is
'Set lock_timeout to a positive interval for the rest of the transaction, or raise.';


-- Take the table's ACCESS EXCLUSIVE lock within lock_timeout, or say why not.
create or replace function type_change_lock(table_name regclass, lock_timeout interval)
returns void
volatile
language plpgsql
as $$
begin
    perform type_change_set_lock_timeout(lock_timeout);
    begin
        execute format('lock table %s in access exclusive mode', table_name);
    exception when lock_not_available then
        raise exception 'could not lock table % within %: another transaction is '
                        'using it; nothing was changed', table_name, lock_timeout
            using errcode = 'lock_not_available',
                  hint = 'Retry when the table is quieter (pg_locks and '
                         'pg_stat_activity show the holder), or pass a longer '
                         'lock_timeout.';
    end;
end;
$$;

comment on function type_change_lock(regclass, interval) is
'Lock a table in ACCESS EXCLUSIVE mode waiting at most lock_timeout; raises 55P03 '
'saying nothing was changed when the lock cannot be had. Sets lock_timeout for the '
'rest of the transaction (the public type change functions restore it on exit).';


create or replace function change_column_type(
    table_name regclass,
    column_name name,
    new_type text,
    mapping json,
    fold_case_and_space boolean default false,
    keep_nulls boolean default false,
    allow_many_to_one boolean default false,
    lock_timeout interval default '2 seconds'
)
returns table (old_value text, new_value text, row_count bigint)
volatile
set lock_timeout = '2s'
set search_path = pg_catalog, public
language plpgsql
as $$
declare
    v_att pg_attribute;
    v_type text;
    v_case text;
    v_old text[];
    v_new text[];
    v_rows bigint[];
    v_locked_at timestamptz;
begin
    -- Arguments and mapping first: a bad call fails before any lock is taken.
    if fold_case_and_space is null or keep_nulls is null or allow_many_to_one is null
    then
        raise exception 'fold_case_and_space, keep_nulls and allow_many_to_one must '
                        'not be null' using errcode = 'invalid_parameter_value';
    end if;
    v_att := type_change_column(table_name, column_name);
    v_type := type_change_type(new_type);
    perform from type_change_mapping(mapping, v_type, fold_case_and_space,
                                     allow_many_to_one);
    v_case := type_change_case(quote_ident(column_name), mapping, v_type,
                               fold_case_and_space, keep_nulls, table_name::text,
                               column_name);
    perform type_change_set_lock_timeout(lock_timeout);

    perform type_change_lock(table_name, lock_timeout);
    v_locked_at := clock_timestamp();

    -- Every value is checked under the lock, so no row can change in between.
    select array_agg(c.old_value), array_agg(c.new_value), array_agg(c.row_count)
      into v_old, v_new, v_rows
      from type_change_check_values(table_name, column_name, mapping, v_type,
                                    fold_case_and_space, keep_nulls) as c;

    execute format('alter table %s alter column %I type %s using %s',
                   table_name, column_name, v_type, v_case);

    raise notice 'converted column % of table % to %; held its ACCESS EXCLUSIVE lock '
                 'for % ms', quote_ident(column_name), table_name, v_type,
        round((extract(epoch from clock_timestamp() - v_locked_at) * 1000)::numeric, 1);
    return query select * from unnest(v_old, v_new, v_rows);
end;
$$;

comment on function change_column_type(regclass, name, text, json, boolean, boolean,
                                       boolean, interval) is
$$Change a column's type in place through an explicit mapping, or change nothing.

  select * from change_column_type('defect', 'risk', 'integer',
                                   '{"HIGH": 3, "MEDIUM": 2, "LOW": 1}');

Every stored value is checked first (under an ACCESS EXCLUSIVE lock taken within
lock_timeout, default 2 s): if any is not a key of the mapping, it raises (SQLSTATE 23514)
listing each unmapped value with its row count, and nothing is changed. Otherwise one
ALTER TABLE ... TYPE ... USING CASE converts the column; that CASE's ELSE raises too.
Old values are matched by their exact text form; fold_case_and_space => true matches
them trimmed of surrounding whitespace and upper-cased. NULLs are refused unless
keep_nulls => true keeps them NULL. Two keys with one new value are refused unless
allow_many_to_one => true. new_type is text and keeps a modifier ('varchar(3)'); a
mapped value the modifier would cut or round is refused. Returns the rows converted per
key. The column must have no default. Large or busy tables: see
type_change_online_start. docs/type-changes.md.$$;


-- Online path --------------------------------------------------------------------

-- Split a trigger's tgargs (each argument NUL-terminated) into text.
create or replace function type_change_trigger_args(args bytea)
returns text[]
immutable
strict
language plpgsql
as $$
declare
    v_result text[] := '{}';
    v_rest bytea := args;
    v_at integer;
begin
    loop
        v_at := position('\x00'::bytea in v_rest);
        exit when v_at = 0;
        v_result := v_result || convert_from(substring(v_rest from 1 for v_at - 1),
                                             current_setting('server_encoding'));
        v_rest := substring(v_rest from v_at + 1);
    end loop;
    return v_result;
end;
$$;

comment on function type_change_trigger_args(bytea) is
'Split pg_trigger.tgargs into its text arguments.';


create or replace function type_change_online_pending()
returns table (table_name regclass, column_name name, new_column name,
               trigger_name name, sync_function regproc)
stable
language sql
as $$
    select t.tgrelid::regclass,
           (type_change_trigger_args(t.tgargs))[1]::name,
           (type_change_trigger_args(t.tgargs))[2]::name,
           t.tgname,
           t.tgfoid::regproc
      from pg_trigger as t
      join pg_proc as p on p.oid = t.tgfoid
     where p.proname like 'type\_change\_sync\_%'
       and t.tgname like 'zz\_type\_change\_sync\_%'
     order by t.tgrelid::regclass::text, 2
$$;

comment on function type_change_online_pending() is
'List the online type changes in progress: table, old column, new column, and the '
'trigger and function keeping them in step.';


-- The pending change of one column, or a clear error. (Dropped first: an earlier
-- version had other parameter names, which create or replace cannot change.)
drop function if exists type_change_online_find(regclass, name);

create or replace function type_change_online_find(p_table regclass, p_column name)
returns table (table_name regclass, column_name name, new_column name,
               trigger_name name, sync_function regproc)
stable
language plpgsql
as $$
begin
    return query select p.* from type_change_online_pending() as p
                  where p.table_name = p_table and p.column_name = p_column;
    if not found then
        raise exception 'no online type change of column % of table % is in progress',
            quote_ident(p_column), p_table
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'Start one with type_change_online_start.';
    end if;
end;
$$;

comment on function type_change_online_find(regclass, name) is
'Return the pending online type change of a column (as type_change_online_pending '
'lists it), or raise.';


-- The primary key the backfill walks, its columns in key order, each with its type as
-- format_type spells it (the cursor's values are cast back to exactly that).
create or replace function type_change_primary_key(
    table_name regclass,
    out key_columns name[],
    out key_types text[]
)
stable
language plpgsql
as $$
begin
    select array_agg(a.attname order by k.position),
           array_agg(format_type(a.atttypid, a.atttypmod) order by k.position)
      into key_columns, key_types
      from pg_index as i
     cross join lateral unnest(i.indkey::smallint[]) with ordinality
                        as k (attnum, position)
      join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = k.attnum
     where i.indrelid = table_name and i.indisprimary
       and k.position <= i.indnkeyatts;
    if key_columns is null then
        raise exception 'table % has no primary key, which the online type change '
                        'backfill walks in order', table_name
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'Add a primary key (of any columns), or convert in place '
                         'with change_column_type.';
    end if;
end;
$$;

comment on function type_change_primary_key(regclass) is
'The primary key columns of a table in key order, with their types (format_type), '
'as the online type change backfill walks them; raises 55000 for a table without one.';


create or replace function type_change_online_start(
    table_name regclass,
    column_name name,
    new_type text,
    mapping json,
    new_column name default null,
    fold_case_and_space boolean default false,
    keep_nulls boolean default false,
    lock_timeout interval default '2 seconds'
)
returns name
volatile
set lock_timeout = '2s'
set search_path = pg_catalog, public
language plpgsql
as $$
declare
    v_att pg_attribute;
    v_type text;
    v_old_type text;
    v_new name;
    v_new_attnum smallint;
    v_function text;
    v_trigger text;
    v_reverse json;
    v_forward text;
    v_backward text;
    v_label text := table_name::text;
begin
    if fold_case_and_space is null or keep_nulls is null then
        raise exception 'fold_case_and_space and keep_nulls must not be null'
            using errcode = 'invalid_parameter_value';
    end if;
    v_att := type_change_column(table_name, column_name);
    -- The backfill walks the primary key: without one, the new column could not be
    -- filled in batches.
    perform type_change_primary_key(table_name);
    v_old_type := format_type(v_att.atttypid, v_att.atttypmod);
    v_type := type_change_type(new_type);
    -- Both directions are needed, so the mapping must be one-to-one.
    perform from type_change_mapping(mapping, v_type, fold_case_and_space, false);
    perform type_change_set_lock_timeout(lock_timeout);

    if new_column is null and octet_length(column_name) > 59 then
        raise exception 'column name % is too long to append _new; pass new_column',
            quote_ident(column_name) using errcode = 'invalid_parameter_value';
    end if;
    v_new := coalesce(new_column, (column_name || '_new')::name);
    if exists (select from pg_attribute where attrelid = table_name and attname = v_new
                                          and not attisdropped) then
        raise exception 'column % of table % already exists', quote_ident(v_new),
            table_name using errcode = 'duplicate_column';
    end if;
    if exists (select from type_change_online_pending() as p
                where p.table_name = $1 and p.column_name = $2) then
        raise exception 'an online type change of column % of table % is already in '
                        'progress', quote_ident(column_name), table_name
            using errcode = 'object_not_in_prerequisite_state';
    end if;

    -- Refuse early, before any lock, if a stored value is not mapped. Rows written
    -- after this read are checked by the trigger, the backfill and the in-step
    -- constraint's validation.
    perform from type_change_check_values(table_name, column_name, mapping, v_type,
                                          fold_case_and_space, keep_nulls);

    -- New value -> key as given: the way back for rows written by new code. The keys
    -- must fit the old column's type as it is, modifier included, and stay distinct
    -- in it (keys '3' and '03' of an integer column cannot both be written back).
    select json_object_agg(m.new_value, m.old_value) into v_reverse
      from type_change_mapping(mapping, v_type, fold_case_and_space, false) as m;
    begin
        perform from type_change_mapping(v_reverse, v_old_type, false, false);
    exception when invalid_parameter_value then
        raise exception 'mapping cannot be reversed into column % (%): %',
            quote_ident(column_name), v_old_type, sqlerrm
            using errcode = 'invalid_parameter_value',
                  hint = 'The trigger writes each key back into the old column for '
                         'rows new code writes: every key must fit it unchanged.';
    end;

    perform type_change_lock(table_name, lock_timeout);

    execute format('alter table %s add column %I %s', table_name, v_new, v_type);
    select attnum into v_new_attnum from pg_attribute
     where attrelid = table_name and attname = v_new;
    execute format('comment on column %s.%I is %L', table_name, v_new,
        format('Online type change of %I to %s in progress: kept in step with it by '
               'trigger zz_type_change_sync_%s; type_change_online_finish swaps it in.',
               column_name, v_type, v_att.attnum));

    -- Constraints that every write keeps from now on, validated before the swap (a
    -- scan that blocks no reader or writer) so the swap itself scans nothing.
    execute format('alter table %s add constraint %I check (%I is not distinct from %s) '
                   'not valid', table_name, 'type_change_in_step_' || v_new_attnum,
        v_new, type_change_case(quote_ident(column_name), mapping, v_type,
                                fold_case_and_space, keep_nulls, v_label,
                                column_name));
    if v_att.attnotnull then
        execute format('alter table %s add constraint %I check (%I is not null) '
                       'not valid', table_name, 'type_change_not_null_' || v_new_attnum,
                       v_new);
    end if;

    v_forward := type_change_case('new.' || quote_ident(column_name), mapping, v_type,
                                  fold_case_and_space, keep_nulls, v_label,
                                  column_name);
    v_backward := type_change_case('new.' || quote_ident(v_new), v_reverse, v_old_type,
                                   false, keep_nulls, v_label, v_new);

    v_function := format('type_change_sync_%s_%s', table_name::oid, v_att.attnum);
    v_trigger := format('zz_type_change_sync_%s', v_att.attnum);
    execute format($f$
create or replace function public.%1$I()
returns trigger
volatile
set search_path = pg_catalog, public
language plpgsql
as $body$
begin
    -- Whichever column a statement wrote decides the other one; an old value
    -- outside the mapping raises instead of leaving the new column NULL.
    if tg_op = 'INSERT' then
        if new.%3$I is null then
            new.%3$I := %4$s;
        elsif new.%2$I is null then
            new.%2$I := %5$s;
        elsif new.%3$I is distinct from %4$s then
            raise exception 'columns %% and %% of table %% disagree: %% and %%',
                %6$L, %7$L, %8$L, new.%2$I, new.%3$I using errcode = 'check_violation';
        end if;
    elsif new.%3$I is distinct from old.%3$I
          and new.%2$I is not distinct from old.%2$I then
        new.%2$I := %5$s;
    elsif new.%2$I is distinct from old.%2$I
          and new.%3$I is distinct from old.%3$I then
        if new.%3$I is distinct from %4$s then
            raise exception 'columns %% and %% of table %% disagree: %% and %%',
                %6$L, %7$L, %8$L, new.%2$I, new.%3$I using errcode = 'check_violation';
        end if;
    else
        new.%3$I := %4$s;
    end if;
    return new;
end;
$body$
$f$, v_function, column_name, v_new, v_forward, v_backward, column_name, v_new,
        v_label);
    execute format('comment on function public.%I() is %L', v_function,
        format('Keeps columns %I and %I of %s in step during an online type change '
               '(generated by type_change_online_start; dropped by finish or abort).',
               column_name, v_new, v_label));

    -- The zz_ prefix: BEFORE triggers fire in name order, and this one must see what
    -- the others wrote.
    execute format('create trigger %I before insert or update on %s for each row '
                   'execute function public.%I(%L, %L)',
                   v_trigger, table_name, v_function, column_name, v_new);
    execute format('comment on trigger %I on %s is %L', v_trigger, table_name,
        format('Online type change of %I into %I; arguments: old column, new column.',
               column_name, v_new));

    raise notice 'started online type change of column % of table % into new column %',
        quote_ident(column_name), table_name, quote_ident(v_new);
    return v_new;
end;
$$;

comment on function type_change_online_start(regclass, name, text, json, name,
                                             boolean, boolean, interval) is
$$Start changing a column's type without rewriting the table under a long lock.

  select type_change_online_start('defect', 'risk', 'integer',
                                  '{"HIGH": 3, "MEDIUM": 2, "LOW": 1}');

Adds new_column (default <column>_new) of new_type, a BEFORE trigger keeping both in
step whichever one a client writes (an unmapped old value raises), and NOT VALID check
constraints (in step; not null when the old column is). The mapping must be one-to-one,
and its keys must fit the old column as they are (they are written back into it).
The table needs a primary key, of one or more columns: the backfill walks it.
Then: fill the new column in batches (pgzen backfill type-change, or
type_change_online_backfill), and call type_change_online_finish for the short swap.
Same mapping rules as change_column_type. docs/type-changes.md.$$;


-- One key value as cursor text. The settings that shape a value's text are pinned,
-- so the text reads back as the same value in any session: a job of the chain may
-- run on a connection whose DateStyle is 'SQL, DMY'. They are PostgreSQL's defaults,
-- so the text is what a default session prints.
create or replace function type_change_key_text(key_value anyelement)
returns text
stable
set datestyle = 'ISO'
set intervalstyle = 'postgres'
set extra_float_digits = 1
language sql
as $$
    select key_value::text
$$;

comment on function type_change_key_text(anyelement) is
'A primary key value as the text of an online type change backfill cursor, in the '
'same spelling in every session (DateStyle ISO, IntervalStyle postgres, floats '
'exact), so that casting it back gives the same value.';


-- The cursor "after" split into one text per key column, each checked to cast to its
-- column's type. A single-column key's cursor is the key's text (as every earlier
-- version wrote it); a composite key's is a JSON array of the values' texts.
create or replace function type_change_backfill_after(
    table_name regclass,
    after text,
    key_columns name[],
    key_types text[]
)
returns text[]
stable
language plpgsql
as $$
declare
    v_count integer := cardinality(key_columns);
    v_shown text;
    v_json jsonb;
    v_ok boolean;
    v_values text[];
    v_bad text;
begin
    if after is null then
        return null;
    end if;
    -- A cursor may be a long text key: the message shows its start.
    v_shown := quote_literal(left(after, 100))
               || case when length(after) > 100 then '...' else '' end;

    if v_count = 1 then
        v_values := array[after];
    else
        begin
            v_json := after::jsonb;
        exception when invalid_text_representation then
            v_json := null;
        end;
        -- One test at a time: SQL does not promise to stop at the first true OR
        -- branch, and jsonb_array_length raises for anything but an array.
        if jsonb_typeof(v_json) is distinct from 'array' then
            v_ok := false;
        elsif jsonb_array_length(v_json) <> v_count then
            v_ok := false;
        else
            v_ok := not exists (select from jsonb_array_elements(v_json) as e
                                 where jsonb_typeof(e) <> 'string');
        end if;
        if not v_ok then
            raise exception 'invalid cursor % for table %: expected a JSON array of % '
                            'strings, the values of its primary key (%)',
                v_shown, table_name, v_count,
                array_to_string(array(select quote_ident(c)
                                        from unnest(key_columns) as c), ', ')
                using errcode = 'invalid_parameter_value',
                      hint = 'Pass the last_key a batch returned, or NULL to start '
                             'from the first row.';
        end if;
        v_values := array(select e from jsonb_array_elements_text(v_json)
                                        with ordinality as x (e, position)
                           order by x.position);
    end if;

    -- Cast here, one value at a time, so that a bad one is named; the batch casts
    -- the same bound texts the same way.
    for i in 1 .. v_count loop
        begin
            execute format('select $1::%s', key_types[i]) using v_values[i];
        exception when others then
            get stacked diagnostics v_bad = message_text;
            raise exception 'invalid cursor % for table %: key column % (%): %',
                v_shown, table_name, quote_ident(key_columns[i]), key_types[i], v_bad
                using errcode = 'invalid_parameter_value',
                      hint = 'Pass the last_key a batch returned, or NULL to start '
                             'from the first row.';
        end;
    end loop;
    return v_values;
end;
$$;

comment on function type_change_backfill_after(regclass, text, name[], text[]) is
'Split an online type change backfill cursor into one text per primary key column: '
'the key''s text for a single-column key, a JSON array of the values'' texts for a '
'composite one. Raises 22023 for a cursor of the wrong shape or with a value its '
'column''s type does not take.';


-- Dropped first: an earlier version returned fewer columns.
drop function if exists type_change_online_backfill(regclass, name, text, integer);

create or replace function type_change_online_backfill(
    table_name regclass,
    column_name name,
    after text,
    batch_size integer
)
returns table (examined integer, last_key text, written integer)
volatile
set search_path = pg_catalog, public
language plpgsql
as $$
declare
    v_change record;
    v_key record;
    v_after text[];
    v_table text;
    v_columns text;
    v_join text;
    v_values text;
    v_descending text;
    v_cursor text;
    v_filter text;
begin
    if batch_size is null or batch_size < 1 then
        raise exception 'batch size must be at least 1, got %',
            coalesce(batch_size::text, 'NULL') using errcode = 'invalid_parameter_value';
    end if;
    select * into v_change from type_change_online_find(table_name, column_name);
    select * into v_key from type_change_primary_key(table_name);
    v_after := type_change_backfill_after(table_name, after, v_key.key_columns,
                                          v_key.key_types);

    -- Schema-qualified, so that a table named like one of the query's CTEs is still
    -- the table.
    select format('%I.%I', n.nspname, c.relname) into v_table
      from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
     where c.oid = table_name;
    select string_agg(format('%I', k.name), ', ' order by k.position),
           string_agg(format('t.%1$I = batch.%1$I', k.name), ' and '
                      order by k.position),
           string_agg(format('($1)[%s]::%s', k.position, k.type), ', '
                      order by k.position),
           string_agg(format('%I desc', k.name), ', ' order by k.position),
           string_agg(format('public.type_change_key_text(%I)', k.name), ', '
                      order by k.position)
      into v_columns, v_join, v_values, v_descending, v_cursor
      from unnest(v_key.key_columns, v_key.key_types) with ordinality
           as k (name, type, position);
    if cardinality(v_key.key_columns) > 1 then
        v_cursor := format('jsonb_build_array(%s)::text', v_cursor);
    end if;

    -- The keyset cursor: rows whose key (a row value for a composite key) comes
    -- after the last key of the previous batch, in primary key order, so the key's
    -- btree serves it and no batch reads a finished row again. Touching the old
    -- column fires the sync trigger, which fills the new one; rows it already keeps
    -- current are skipped.
    v_filter := case when v_after is null then ''
                     else format('where (%s) > (%s)', v_columns, v_values) end;
    return query execute format(
        'with batch as ('
        '    select %1$s from %2$s %3$s order by %1$s limit $2'
        '), touched as ('
        '    update %2$s as t set %4$I = t.%4$I from batch'
        '     where %5$s and t.%6$I is null and t.%4$I is not null'
        '    returning 1'
        ')'
        'select (select count(*) from batch)::integer,'
        '       (select %7$s from batch order by %8$s limit 1),'
        '       (select count(*) from touched)::integer',
        v_columns, v_table, v_filter, v_change.column_name, v_join,
        v_change.new_column, v_cursor, v_descending)
        using v_after, batch_size;
end;
$$;

comment on function type_change_online_backfill(regclass, name, text, integer) is
$$Fill one batch of the new column of an online type change: the next batch_size rows
in primary key order after the cursor "after" (NULL: from the start).

Returns the rows examined, the last key (the cursor for the next batch) and the rows
written; a batch examining fewer than batch_size rows was the last. Any primary key
works: a single-column key's cursor is the key as text ('42'), a composite key's a
JSON array of its values as text ('["42", "b"]'), each cast back to its column's type.
Raises 22023 for a malformed cursor, 55000 for a table without a primary key.$$;


create or replace function type_change_online_progress(
    table_name regclass,
    column_name name
)
returns table (done bigint, remaining bigint)
stable
set search_path = pg_catalog, public
language plpgsql
as $$
declare
    v_change record;
begin
    select * into v_change from type_change_online_find(table_name, column_name);
    return query execute format(
        'select count(*) filter (where %1$I is not null or %2$I is null),'
        '       count(*) filter (where %1$I is null and %2$I is not null)'
        '  from %3$s', v_change.new_column, v_change.column_name, table_name);
end;
$$;

comment on function type_change_online_progress(regclass, name) is
'Count the rows of an online type change already in step (done) and still to '
'backfill (remaining). A full scan: for progress reports, not for batches.';


drop function if exists type_change_online_finish(regclass, name, interval);

create or replace function type_change_online_finish(
    table_name regclass,
    column_name name,
    lock_timeout interval default '2 seconds',
    rename boolean default true
)
returns void
volatile
set lock_timeout = '2s'
set search_path = pg_catalog, public
language plpgsql
as $$
declare
    v_change record;
    v_old_attnum smallint;
    v_new_attnum smallint;
    v_blockers text;
    v_missing bigint;
    v_comment text;
    v_not_null boolean;
    v_locked_at timestamptz;
    v_final name;
begin
    if rename is null then
        raise exception 'rename must not be null' using errcode = 'invalid_parameter_value';
    end if;
    select * into v_change from type_change_online_find(table_name, column_name);
    v_final := case when rename then v_change.column_name else v_change.new_column end;
    select attnum into v_old_attnum from pg_attribute
     where attrelid = table_name and attname = v_change.column_name;
    select attnum into v_new_attnum from pg_attribute
     where attrelid = table_name and attname = v_change.new_column;

    -- Objects that would vanish silently with the old column, other than ours.
    select string_agg(pg_describe_object(d.classid, d.objid, d.objsubid), ', '
                      order by 1)
      into v_blockers
      from pg_depend as d
      left join pg_constraint as c
             on d.classid = 'pg_constraint'::regclass and c.oid = d.objid
     where d.refclassid = 'pg_class'::regclass and d.refobjid = table_name
       and d.refobjsubid = v_old_attnum and d.deptype in ('n', 'a')
       and coalesce(c.conname not like 'type\_change\_in\_step\_%'
                    and c.contype <> 'n', true);
    if v_blockers is not null then
        raise exception 'column % of table % is still used by: %',
            quote_ident(column_name), table_name, v_blockers
            using errcode = 'dependent_objects_still_exist',
                  hint = 'Recreate them on column ' || quote_ident(v_change.new_column)
                         || ' (indexes concurrently), drop the old ones, then finish.';
    end if;

    -- Without blocking anyone: every row filled, then the constraints proven.
    execute format('select count(*) from %s where %I is null and %I is not null',
                   table_name, v_change.new_column, v_change.column_name)
       into v_missing;
    if v_missing > 0 then
        raise exception '% % of table % not backfilled yet; nothing was changed',
            v_missing, case when v_missing = 1 then 'row' else 'rows' end, table_name
            using errcode = 'object_not_in_prerequisite_state',
                  hint = 'Run the backfill to its end (pgzen backfill type-change '
                         '--wait), then finish.';
    end if;
    perform type_change_set_lock_timeout(lock_timeout);
    execute format('alter table %s validate constraint %I', table_name,
                   'type_change_in_step_' || v_new_attnum);
    v_not_null := exists (select from pg_constraint where conrelid = table_name
                            and conname = 'type_change_not_null_' || v_new_attnum);
    if v_not_null then
        execute format('alter table %s validate constraint %I', table_name,
                       'type_change_not_null_' || v_new_attnum);
    end if;

    -- The swap: catalogue changes only, under a lock held for milliseconds.
    perform type_change_lock(table_name, lock_timeout);
    v_locked_at := clock_timestamp();
    v_comment := col_description(table_name, v_old_attnum);
    execute format('drop trigger %I on %s', v_change.trigger_name, table_name);
    execute format('alter table %s drop column %I', table_name, v_change.column_name);
    if rename then
        execute format('alter table %s rename column %I to %I', table_name,
                       v_change.new_column, v_change.column_name);
    end if;
    if v_not_null then
        -- The validated check constraint proves it, so this scans nothing.
        execute format('alter table %s alter column %I set not null', table_name,
                       v_final);
        execute format('alter table %s drop constraint %I', table_name,
                       'type_change_not_null_' || v_new_attnum);
    end if;
    execute format('comment on column %s.%I is %L', table_name, v_final, v_comment);
    execute format('drop function %s()', v_change.sync_function);

    raise notice 'swapped column % of table % in; held its ACCESS EXCLUSIVE lock '
                 'for % ms', quote_ident(column_name), table_name,
        round((extract(epoch from clock_timestamp() - v_locked_at) * 1000)::numeric, 1);
end;
$$;

comment on function type_change_online_finish(regclass, name, interval, boolean) is
$$Finish an online type change: the short swap.

Refuses (changing nothing) while any row is not backfilled, or while an index, view or
constraint other than its own still uses the old column. Validates the change's check
constraints without blocking writes, then under an ACCESS EXCLUSIVE lock (taken within
lock_timeout) drops the trigger and the old column and renames the new column to the
old name (rename => false keeps the new name, for code already using it), keeping its
comment and NOT NULL. The column moves to the end of the table.$$;


create or replace function type_change_online_abort(
    table_name regclass,
    column_name name,
    lock_timeout interval default '2 seconds'
)
returns void
volatile
set lock_timeout = '2s'
set search_path = pg_catalog, public
language plpgsql
as $$
declare
    v_change record;
begin
    select * into v_change from type_change_online_find(table_name, column_name);
    perform type_change_lock(table_name, lock_timeout);
    execute format('drop trigger %I on %s', v_change.trigger_name, table_name);
    execute format('alter table %s drop column %I', table_name, v_change.new_column);
    execute format('drop function %s()', v_change.sync_function);
end;
$$;

comment on function type_change_online_abort(regclass, name, interval) is
'Undo type_change_online_start: drop the new column, its constraints, the trigger and '
'its function. The old column is untouched.';
