-- Vectorizer functions (PL/pgSQL; re-applied on every install).  Identifiers go through
-- format('%I'); key types come from format_type(); the content expression is a SQL fragment the
-- source table's owner wrote (like a generated column) and is only ever run with that owner's rights.

-- Text for the full-text index: Chinese, Japanese and Korean are written without spaces, so every
-- pair of neighbouring CJK characters becomes a word (the bigram method of pg_bigm and Lucene's CJK
-- analyzer); other text is left to the english parser, which stems it.  Plain SQL: works anywhere.
create or replace function ai.fts_text(t text) returns text
language plpgsql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
declare
    m text[];
    out text := '';
begin
    for m in select regexp_matches(t, '([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+)|([^\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+)', 'g') loop
        if m[1] is null then
            out := out || m[2];
        elsif length(m[1]) = 1 then
            out := out || ' ' || m[1] || ' ';
        else
            out := out || ' ' || (select string_agg(substr(m[1], i, 2), ' ') from generate_series(1, length(m[1]) - 1) i) || ' ';
        end if;
    end loop;
    return out;
end $$;

-- SQL fragments over a vectorizer's key columns.
--   ai._key_json(id, 'n')          jsonb_build_object('id', n.id, ...)
--   ai._key_from_json(id, 'k')     (k->>'id')::integer, ...
--   ai._key_cols(id, 's')          s.id, ...
create or replace function ai._key_json(vid int, alias text) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select 'jsonb_build_object(' || string_agg(format('%L, %I.%I', c, alias, c), ', ' order by i) || ')'
    from ai.vectorizers v, unnest(v.key_columns) with ordinality as k(c, i) where v.id = vid
$$;

create or replace function ai._key_from_json(vid int, alias text) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select string_agg(format('(%I->>%L)::%s', alias, c, t), ', ' order by i)
    from ai.vectorizers v, unnest(v.key_columns, v.key_types) with ordinality as k(c, t, i) where v.id = vid
$$;

create or replace function ai._key_cols(vid int, alias text) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select string_agg(format('%I.%I', alias, c), ', ' order by i)
    from ai.vectorizers v, unnest(v.key_columns) with ordinality as k(c, i) where v.id = vid
$$;

create or replace function ai._vectorizer_id(p_name text) returns int
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int;
begin
    select id into vid from ai.vectorizers where name = p_name;
    if vid is null then
        raise exception 'vectorizer "%" does not exist', p_name
            using errcode = '42704', hint = 'list them with select * from ai.vectorizer_status';
    end if;
    return vid;
end $$;

create or replace function ai._check_vectorizer_owner(vid int) returns void
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    o name;
begin
    select owner into o from ai.vectorizers where id = vid;
    if not (ai._is_admin(session_user) or pg_has_role(session_user, o, 'MEMBER')) then
        raise exception 'must own the source table (owner %) to change its vectorizer', o
            using errcode = '42501', hint = 'run it as the table''s owner or a pgmind administrator';
    end if;
end $$;

-- Queue keys for every live version (called by the generated triggers, which run as whoever
-- changed the source table).  A forged key only causes that key to be looked at again.
create or replace function ai._enqueue(vid int, keys jsonb[]) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    insert into ai.vectorizer_queue (vectorizer_id, version, key)
    select vid, ver.version, k from ai.vectorizer_versions ver, unnest(keys) as k
    where ver.vectorizer_id = vid and k is not null
    on conflict (vectorizer_id, version, key) do update
        set seq = nextval('ai.vectorizer_queue_seq'), queued_at = now(), attempts = 0,
            next_attempt_at = now(), last_error = null;
    delete from ai._vectorizer_errors e where e.vectorizer_id = vid and e.key = any (keys);
end $$;

-- Queue every row of the source for one version (backfill, re-embedding into a new version).
create or replace function ai._enqueue_all(vid int, p_version int) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    v ai.vectorizers;
    n bigint;
begin
    perform ai._check_vectorizer_owner(vid);
    select * into v from ai.vectorizers where id = vid;
    execute format('insert into ai.vectorizer_queue (vectorizer_id, version, key)
                    select $1, $2, %s from %s s
                    on conflict (vectorizer_id, version, key) do update
                        set seq = nextval(''ai.vectorizer_queue_seq''), queued_at = now(), attempts = 0,
                            next_attempt_at = now(), last_error = null',
                   ai._key_json(vid, 's'), v.source)
        using vid, p_version;
    get diagnostics n = row_count;
    return n;
end $$;

-- Remove the chunks of deleted (or re-keyed) source rows from every version, and their queue
-- entries.  The queue rows go first: a worker that holds them finishes its write before this
-- deletes what it wrote.
create or replace function ai._forget(vid int, keys jsonb[]) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    v ai.vectorizers;
    ver record;
begin
    select * into v from ai.vectorizers where id = vid;
    delete from ai.vectorizer_queue q where q.vectorizer_id = vid and q.key = any (keys);
    delete from ai._vectorizer_errors e where e.vectorizer_id = vid and e.key = any (keys);
    for ver in select store_table from ai.vectorizer_versions where vectorizer_id = vid loop
        execute format('delete from %I.%I s where (%s) in (select %s from unnest($1) as k)',
                       v.dest_schema, ver.store_table, ai._key_cols(vid, 's'), ai._key_from_json(vid, 'k'))
            using keys;
    end loop;
end $$;

create or replace function ai._forget_all(vid int) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    v ai.vectorizers;
    ver record;
begin
    select * into v from ai.vectorizers where id = vid;
    delete from ai.vectorizer_queue q where q.vectorizer_id = vid;
    delete from ai._vectorizer_errors e where e.vectorizer_id = vid;
    for ver in select store_table from ai.vectorizer_versions where vectorizer_id = vid loop
        execute format('truncate %I.%I', v.dest_schema, ver.store_table);
    end loop;
end $$;

-- The trigger function for one vectorizer: inserts queue (statement level, one call per
-- statement); updates queue only when the content or the key changed; deletes and truncates
-- remove chunks at once, in the same transaction.
create or replace function ai._trigger_source(vid int) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    v ai.vectorizers;
    keys_differ text;
begin
    select * into v from ai.vectorizers where id = vid;
    select string_agg(format('old.%1$I is distinct from new.%1$I', c), ' or ') into keys_differ
    from unnest(v.key_columns) c;
    return format($f$
        begin
            if tg_op = 'INSERT' then
                perform ai._enqueue(%1$s, array(select %2$s from new_rows n));
            elsif tg_op = 'UPDATE' then
                if %3$s then
                    perform ai._forget(%1$s, array[%4$s]);
                    perform ai._enqueue(%1$s, array[%5$s]);
                elsif (select (%6$s)::text from (select old.*) s) is distinct from
                      (select (%6$s)::text from (select new.*) s) then
                    perform ai._enqueue(%1$s, array[%5$s]);
                end if;
            elsif tg_op = 'DELETE' then
                perform ai._forget(%1$s, array[%4$s]);
            elsif tg_op = 'TRUNCATE' then
                perform ai._forget_all(%1$s);
            end if;
            return null;
        end $f$,
        vid, ai._key_json(vid, 'n'), keys_differ, ai._key_json(vid, 'old'), ai._key_json(vid, 'new'),
        v.content);
end $$;

create or replace function ai._register_vectorizer(
    p_name text, p_source regclass, p_key_columns name[], p_key_types text[], p_content text,
    p_dest_schema name, p_dest_view name, p_trigger_fn text, p_model text, p_chunking jsonb,
    p_index jsonb, p_dimensions int, p_store name, p_caller name)
returns int language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int;
    table_owner name;
begin
    perform ai._check_caller(p_caller);
    select relowner::regrole::text into table_owner from pg_class where oid = p_source;
    if not pg_has_role(p_caller, table_owner, 'USAGE') then
        raise exception 'must own table % to create a vectorizer on it', p_source
            using errcode = '42501', hint = format('run it as %s, the table''s owner', table_owner);
    end if;
    insert into ai.vectorizers (name, source, key_columns, key_types, content, owner, dest_schema, dest_view, trigger_fn)
    values (p_name, p_source, p_key_columns, p_key_types, p_content, table_owner, p_dest_schema, p_dest_view, p_trigger_fn)
    returning id into vid;
    insert into ai.vectorizer_versions (vectorizer_id, version, model, chunking, index_spec, dimensions, store_table,
                                        status, activated_at)
    values (vid, 1, p_model, p_chunking, p_index, p_dimensions, p_store, 'active', now());
    return vid;
end $$;

create or replace function ai._vector_schema() returns name
language sql stable set search_path = pg_catalog, pg_temp as $$
    select extnamespace::regnamespace::name from pg_extension where extname = 'vector'
$$;

-- Check the model for a vectorizer: an embedding model the caller may use, with a known dimension.
create or replace function ai._vectorizer_model(p_model text) returns record
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    m record;
begin
    select * into m from ai._model_for_call(p_model, current_user);
    if m.model_type <> 'embedding' then
        raise exception 'model "%" is a % model, not an embedding model', p_model, m.model_type
            using errcode = '22023', hint = 'pick an embedding model from select * from ai.models';
    end if;
    if m.dimensions is null then
        raise exception 'model "%" has no known dimension', p_model
            using errcode = '22023', hint = 'register it with options => ''{"dimensions": N}'', or while pgmind serve runs';
    end if;
    return m;
end $$;

create or replace function ai._check_chunking(chunking jsonb) returns jsonb
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    chunking := '{"method": "recursive", "max_tokens": 256, "overlap": 32}'::jsonb || coalesce(chunking, '{}');
    if chunking->>'method' not in ('recursive', 'markdown', 'html', 'none') then
        raise exception 'unknown chunking method "%"', chunking->>'method'
            using errcode = '22023', hint = 'method is one of recursive, markdown, html, none';
    end if;
    if jsonb_typeof(chunking->'max_tokens') <> 'number' or (chunking->>'max_tokens')::numeric < 8
       or jsonb_typeof(chunking->'overlap') <> 'number' or (chunking->>'overlap')::numeric < 0
       or (chunking->>'overlap')::numeric * 2 >= (chunking->>'max_tokens')::numeric then
        raise exception 'invalid chunk sizes: max_tokens % and overlap %', chunking->'max_tokens', chunking->'overlap'
            using errcode = '22023', hint = 'max_tokens is at least 8 and overlap under half of it';
    end if;
    return chunking;
end $$;

-- Creates the store table of one version (with the caller's rights: it belongs to the table owner).
create or replace function ai._create_store(vid_source regclass, p_schema name, p_store name,
                                            key_columns name[], key_types text[], dims int, index_spec jsonb,
                                            metric text)
returns void language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    cols text;
    opclass text;
    vschema name := ai._vector_schema();
begin
    select string_agg(format('%I %s not null', c, t), ', ' order by i) into cols
    from unnest(key_columns, key_types) with ordinality as k(c, t, i);
    -- fts: words for keyword search, Chinese as overlapping character pairs (ai.fts_text)
    execute format('create table %I.%I (%s, chunk_seq int not null, chunk text not null, embedding %I.vector(%s) not null,
                    fts tsvector generated always as (to_tsvector(''english''::regconfig, ai.fts_text(chunk))) stored,
                    primary key (%s, chunk_seq))',
                   p_schema, p_store, cols, vschema, dims,
                   (select string_agg(format('%I', c), ', ') from unnest(key_columns) c));
    execute format('create index on %I.%I using gin (fts)', p_schema, p_store);
    execute format('comment on table %I.%I is %L', p_schema, p_store,
                   format('pgmind vectorizer chunks of %s; written by pgmind workers', vid_source));
    index_spec := '{"type": "hnsw", "m": 16, "ef_construction": 64}'::jsonb || coalesce(index_spec, '{}');
    opclass := case coalesce(metric, 'cosine') when 'cosine' then 'vector_cosine_ops'
                                                when 'l2' then 'vector_l2_ops' when 'ip' then 'vector_ip_ops' end;
    if index_spec->>'type' = 'hnsw' then
        execute format('create index on %I.%I using hnsw (embedding %I.%I) with (m = %s, ef_construction = %s)',
                       p_schema, p_store, vschema, opclass, (index_spec->>'m')::int,
                       (index_spec->>'ef_construction')::int);
    elsif index_spec->>'type' = 'ivfflat' then
        execute format('create index on %I.%I using ivfflat (embedding %I.%I) with (lists = %s)',
                       p_schema, p_store, vschema, opclass, coalesce((index_spec->>'lists')::int, 100));
    elsif index_spec->>'type' <> 'none' then
        raise exception 'unknown index type "%"', index_spec->>'type'
            using errcode = '22023', hint = 'index type is one of hnsw, ivfflat, none';
    end if;
end $$;

-- The destination view: the active version's table, its embedding column without a dimension, so a
-- new version of another dimension replaces the view in place (grants on it are kept).  The
-- index still serves the view: the planner looks through the cast.
create or replace function ai._view_sql(p_schema name, p_store name, key_columns name[]) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select format('select %s, chunk_seq, chunk, embedding::%I.vector as embedding, fts from %I.%I',
                  (select string_agg(format('%I', c), ', ') from unnest(key_columns) c),
                  ai._vector_schema(), p_schema, p_store)
$$;

create or replace function ai.create_vectorizer(
    source regclass, name text default null, content text default null, model text default 'e5-small',
    chunking jsonb default null, index jsonb default null, backfill boolean default true)
returns int language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    v_schema name;
    v_table name;
    v_name text;
    key_cols name[];
    key_typs text[];
    m record;
    vid int;
    store name;
    dest name;
    trig text;
    text_cols name[];
begin
    if source is null then
        raise exception 'source table is required' using errcode = '22023', hint = 'pass it as ''public.docs''::regclass';
    end if;
    select n.nspname, c.relname into v_schema, v_table
    from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = source and c.relkind in ('r', 'p');
    if v_table is null then
        raise exception '% is not a table', source using errcode = '42809', hint = 'a vectorizer reads a table';
    end if;
    v_name := coalesce(name, v_table);
    if v_name !~ '^[a-z_][a-z0-9_]{0,47}$' then
        raise exception 'invalid vectorizer name "%"', v_name
            using errcode = '22023', hint = 'use lower-case letters, digits and _ (up to 48), e.g. name => ''docs''';
    end if;
    if exists (select 1 from ai.vectorizers v where v.name = v_name) then
        raise exception 'vectorizer "%" already exists', v_name
            using errcode = '42710', hint = 'drop it with ai.drop_vectorizer, or change it with ai.alter_vectorizer';
    end if;
    select array_agg(a.attname order by k.i), array_agg(format_type(a.atttypid, a.atttypmod) order by k.i)
      into key_cols, key_typs
    from pg_index x cross join unnest(x.indkey) with ordinality as k(attnum, i)
    join pg_attribute a on a.attrelid = x.indrelid and a.attnum = k.attnum
    where x.indrelid = source and x.indisprimary;
    if key_cols is null then
        raise exception 'table % has no primary key', source
            using errcode = '42P16', hint = 'add one: alter table ... add primary key (...)';
    end if;
    if content is null then
        select array_agg(attname) into text_cols from pg_attribute
        where attrelid = source and attnum > 0 and not attisdropped
          and atttypid in ('text'::regtype, 'varchar'::regtype);
        if coalesce(array_length(text_cols, 1), 0) <> 1 then
            raise exception 'content is required: the table has % text columns', coalesce(array_length(text_cols, 1), 0)
                using errcode = '22023', hint = 'pass content => ''body'' or an expression like ''title || E''''\n\n'''' || body''';
        end if;
        content := format('%I', text_cols[1]);
    end if;
    begin
        execute format('select (%s)::text from %s limit 0', content, source);
    exception when others then
        raise exception 'content % is not a valid expression over %: %', content, source, sqlerrm
            using errcode = '42601', hint = 'use the table''s column names, e.g. title || E''\n\n'' || body';
    end;
    m := ai._vectorizer_model(model);
    chunking := ai._check_chunking(chunking);
    dest := v_name || '_chunks';
    store := v_name || '_chunks_v1';
    if to_regclass(format('%I.%I', v_schema, dest)) is not null or to_regclass(format('%I.%I', v_schema, store)) is not null then
        raise exception 'relation %.% already exists', v_schema, dest
            using errcode = '42P07', hint = 'pick another name => for the vectorizer';
    end if;
    perform ai._create_store(source, v_schema, store, key_cols, key_typs, m.dimensions, index,
                             coalesce(m.options->>'metric', 'cosine'));
    execute format('create view %I.%I as %s', v_schema, dest, ai._view_sql(v_schema, store, key_cols));
    trig := format('%I.%I', v_schema, v_name || '_vectorizer_trigger');
    vid := ai._register_vectorizer(v_name, source, key_cols, key_typs, content, v_schema, dest,
                                   trig || '()', model, chunking,
                                   '{"type": "hnsw", "m": 16, "ef_construction": 64}'::jsonb || coalesce(index, '{}'),
                                   m.dimensions, store, current_user);
    execute format('create function %s() returns trigger language plpgsql set search_path = pg_catalog, pg_temp as %L',
                   trig, ai._trigger_source(vid));
    execute format('create trigger %I after insert on %s referencing new table as new_rows for each statement execute function %s()',
                   v_name || '_vectorizer_insert', source, trig);
    execute format('create trigger %I after update or delete on %s for each row execute function %s()',
                   v_name || '_vectorizer_change', source, trig);
    execute format('create trigger %I after truncate on %s for each statement execute function %s()',
                   v_name || '_vectorizer_truncate', source, trig);
    if backfill then
        perform ai._enqueue_all(vid, 1);
    end if;
    return vid;
end $$;

create or replace function ai._unregister_vectorizer(vid int) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai._check_vectorizer_owner(vid);
    delete from ai.vectorizer_progress where vectorizer_id = vid;
    delete from ai.vectorizers where id = vid;
end $$;

create or replace function ai.drop_vectorizer(name text, drop_chunks boolean default true) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai._vectorizer_id(name);
    v record;
    ver record;
begin
    perform ai._check_vectorizer_owner(vid);
    select * into v from ai._vectorizer_info(vid);
    execute format('drop trigger if exists %I on %s', name || '_vectorizer_insert', v.source);
    execute format('drop trigger if exists %I on %s', name || '_vectorizer_change', v.source);
    execute format('drop trigger if exists %I on %s', name || '_vectorizer_truncate', v.source);
    execute format('drop function if exists %s', v.trigger_fn);
    if drop_chunks then
        execute format('drop view if exists %I.%I', v.dest_schema, v.dest_view);
        for ver in select * from ai._vectorizer_stores(vid) loop
            execute format('drop table if exists %I.%I', v.dest_schema, ver.store_table);
        end loop;
    end if;
    perform ai._unregister_vectorizer(vid);
end $$;

-- What a table owner may read about its vectorizer (the registry itself is private).
create or replace function ai._vectorizer_info(vid int)
returns table (source regclass, dest_schema name, dest_view name, trigger_fn text, key_columns name[],
               key_types text[], content text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select source, dest_schema, dest_view, trigger_fn, key_columns, key_types, content
    from ai.vectorizers where id = vid
$$;

drop function if exists ai._vectorizer_stores(int);   -- its result gained a column
create or replace function ai._vectorizer_stores(vid int)
returns table (version int, store_table name, status text, model text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select version, store_table, status, model from ai.vectorizer_versions where vectorizer_id = vid order by version
$$;

-- Change the model, chunking or index: a new version is embedded in the background while the old
-- one keeps serving; a worker switches the view over once the new one is complete.
create or replace function ai._add_version(vid int, p_model text, p_chunking jsonb, p_index jsonb, p_dims int,
                                           p_store name) returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    next_version int;
begin
    perform ai._check_vectorizer_owner(vid);
    if exists (select 1 from ai.vectorizer_versions where vectorizer_id = vid and status = 'building') then
        raise exception 'a new version of this vectorizer is already being built'
            using errcode = '55006', hint = 'wait for it (select * from ai.vectorizer_status), then alter again';
    end if;
    select max(version) + 1 into next_version from ai.vectorizer_versions where vectorizer_id = vid;
    insert into ai.vectorizer_versions (vectorizer_id, version, model, chunking, index_spec, dimensions, store_table, status)
    values (vid, next_version, p_model, p_chunking, p_index, p_dims, p_store, 'building');
    perform ai._enqueue_all(vid, next_version);
    return next_version;
end $$;

create or replace function ai.alter_vectorizer(name text, model text default null, chunking jsonb default null,
                                               index jsonb default null) returns int
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai._vectorizer_id(name);
    v record;
    cur record;
    m record;
    next_version int;
    store name;
begin
    perform ai._check_vectorizer_owner(vid);
    select * into v from ai._vectorizer_info(vid);
    select vv.* into cur from ai.vectorizer_status vv where vv.name = alter_vectorizer.name and vv.status = 'active';
    m := ai._vectorizer_model(coalesce(model, cur.model));
    chunking := ai._check_chunking(coalesce(chunking, cur.chunking));
    index := '{"type": "hnsw", "m": 16, "ef_construction": 64}'::jsonb || coalesce(index, cur.index_spec);
    select coalesce(max(s.version), 0) + 1 into next_version from ai._vectorizer_stores(vid) s;
    store := name || '_chunks_v' || next_version;
    perform ai._create_store(v.source, v.dest_schema, store, v.key_columns, v.key_types, m.dimensions, index,
                             coalesce(m.options->>'metric', 'cosine'));
    return ai._add_version(vid, m.model_id, chunking, index, m.dimensions, store);
end $$;

-- Called by a worker when a building version has nothing left in its queue: switch the view to it
-- and drop the old version, in one transaction.
create or replace function ai._activate_version(vid int, p_version int) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    v ai.vectorizers;
    old record;
    new_store name;
begin
    select * into v from ai.vectorizers where id = vid for update;
    select store_table into new_store from ai.vectorizer_versions
    where vectorizer_id = vid and version = p_version and status = 'building';
    if new_store is null or exists (select 1 from ai.vectorizer_queue
                                    where vectorizer_id = vid and version = p_version) then
        return false;
    end if;
    select * into old from ai.vectorizer_versions where vectorizer_id = vid and status = 'active';
    execute format('create or replace view %I.%I as %s', v.dest_schema, v.dest_view,
                   ai._view_sql(v.dest_schema, new_store, v.key_columns));
    delete from ai.vectorizer_versions where vectorizer_id = vid and version = old.version;
    execute format('drop table if exists %I.%I', v.dest_schema, old.store_table);
    update ai.vectorizer_versions set status = 'active', activated_at = now()
    where vectorizer_id = vid and version = p_version;
    return true;
end $$;

-- Queue every row again (for example after the model's weights changed); the worker re-embeds.
create or replace function ai.vectorizer_backfill(name text) returns bigint
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai._vectorizer_id(name);
    n bigint := 0;
    ver record;
begin
    for ver in select * from ai._vectorizer_stores(vid) loop
        n := n + ai._enqueue_all(vid, ver.version);
    end loop;
    return n;
end $$;

-- Re-queue quarantined rows (after fixing the data or the model).
create or replace function ai.vectorizer_retry(name text) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai._vectorizer_id(name);
    n bigint;
begin
    perform ai._check_vectorizer_owner(vid);
    with moved as (
        delete from ai._vectorizer_errors e where e.vectorizer_id = vid returning e.version, e.key)
    insert into ai.vectorizer_queue (vectorizer_id, version, key)
    select vid, version, key from moved
    on conflict (vectorizer_id, version, key) do update set next_attempt_at = now(), attempts = 0;
    get diagnostics n = row_count;
    return n;
end $$;

-- Rows embedded so far in a version (each embedded row has a chunk 0).
create or replace function ai._vectorizer_done(vid int, p_version int) returns bigint
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v ai.vectorizers;
    s name;
    n bigint;
begin
    select * into v from ai.vectorizers where id = vid;
    select store_table into s from ai.vectorizer_versions where vectorizer_id = vid and version = p_version;
    if s is null or to_regclass(format('%I.%I', v.dest_schema, s)) is null then
        return null;
    end if;
    execute format('select count(*) from %I.%I where chunk_seq = 0', v.dest_schema, s) into n;
    return n;
end $$;

create or replace view ai.vectorizer_status as
select v.name, v.source::text as source, format('%I.%I', v.dest_schema, v.dest_view) as destination,
       ver.version, ver.status, ver.model, ver.chunking, ver.index_spec, ver.dimensions,
       coalesce(q.pending, 0) as pending, coalesce(q.leased, 0) as leased,
       ai._vectorizer_done(v.id, ver.version) as done,
       coalesce(e.errors, 0) as errors,
       q.oldest_pending as lag,
       coalesce(p.rows_last_minute, 0) / 60.0 as rows_per_second,
       coalesce(q.last_error, e.last_error) as last_error
from ai.vectorizers v
join ai.vectorizer_versions ver on ver.vectorizer_id = v.id
left join lateral (
    select count(*) filter (where lease_until is null or lease_until < now()) as pending,
           count(*) filter (where lease_until >= now()) as leased,
           now() - min(queued_at) as oldest_pending,
           (array_agg(last_error order by queued_at desc) filter (where last_error is not null))[1] as last_error
    from ai.vectorizer_queue q where q.vectorizer_id = v.id and q.version = ver.version) q on true
left join lateral (
    select count(*) as errors, (array_agg(error order by failed_at desc))[1] as last_error
    from ai._vectorizer_errors e where e.vectorizer_id = v.id and e.version = ver.version) e on true
left join lateral (
    select sum(rows) as rows_last_minute from ai.vectorizer_progress p
    where p.vectorizer_id = v.id and p.version = ver.version and p.at > now() - interval '1 minute') p on true
where ai._is_admin(current_user) or pg_has_role(current_user, v.owner, 'USAGE');

create or replace view ai.vectorizer_errors as
select v.name as vectorizer, e.version, e.key, e.error, e.sqlstate, e.attempts, e.failed_at
from ai._vectorizer_errors e join ai.vectorizers v on v.id = e.vectorizer_id
where ai._is_admin(current_user) or pg_has_role(current_user, v.owner, 'USAGE');

create or replace view ai.vectorizer_worker_status as
select worker_id, hostname, pid, started_at, heartbeat_at, now() - heartbeat_at as silent_for,
       rows_done, chunks_done, errors, last_error
from ai.vectorizer_workers;

grant select on ai.vectorizer_status, ai.vectorizer_errors, ai.vectorizer_worker_status to public;
