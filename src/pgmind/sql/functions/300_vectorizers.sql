-- Vectorizer functions (PL/pgSQL; re-applied on every install).  Identifiers go through
-- format('%I'); key types come from format_type(); the content expression is a SQL fragment the
-- source table's owner wrote (like a generated column) and is only ever run with that owner's rights.

-- Text for the full-text index: Chinese, Japanese and Korean are written without spaces, so every
-- pair of neighbouring CJK characters becomes a word (the bigram method of pg_bigm and Lucene's CJK
-- analyzer); other text is left to the english parser, which stems it.  Plain SQL: works anywhere.
-- (Linear in the text's length: one pass of regexp_matches and of each CJK run's characters;
-- concatenating in a loop, or substr() on UTF-8, made a long text quadratic.)
create or replace function ai.fts_text(t text) returns text
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select coalesce(string_agg(
               case when r.m[1] is null then r.m[2]
                    when length(r.m[1]) = 1 then ' ' || r.m[1] || ' '
                    else ' ' || (select string_agg(p.c || p.nxt, ' ' order by p.n)
                                 from (select u.c, u.n, lead(u.c) over (order by u.n) as nxt
                                       from unnest(string_to_array(r.m[1], null)) with ordinality as u(c, n)) p
                                 where p.nxt is not null) || ' ' end,
               '' order by r.n), '')
    from regexp_matches(t, '([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+)|([^\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+)', 'g')
         with ordinality as r(m, n)
$$;

-- The schema of the vector extension (types and operators are named with it).
create or replace function ai_internal._vector_schema() returns name
language sql stable set search_path = pg_catalog, pg_temp as $$
    select extnamespace::regnamespace::name from pg_extension where extname = 'vector'
$$;

-- SQL fragments over a vectorizer's key columns (security definer: the registry is private, but
-- its key column names and types are in the catalog for everyone anyway).
--   ai_internal._key_json(id, 'n')          jsonb_build_object('id', n.id, ...)
--   ai_internal._key_from_json(id, 'k')     (k->>'id')::integer, ...
--   ai_internal._key_cols(id, 's')          s.id, ...
create or replace function ai_internal._key_json(vid int, alias text) returns text
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select 'jsonb_build_object(' || string_agg(format('%L, %I.%I', c, alias, c), ', ' order by i) || ')'
    from ai.vectorizers v, unnest(v.key_columns) with ordinality as k(c, i) where v.id = vid
$$;

create or replace function ai_internal._key_from_json(vid int, alias text) returns text
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select string_agg(format('(%I->>%L)::%s', alias, c, t), ', ' order by i)
    from ai.vectorizers v, unnest(v.key_columns, v.key_types) with ordinality as k(c, t, i) where v.id = vid
$$;

create or replace function ai_internal._key_cols(vid int, alias text) returns text
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select string_agg(format('%I.%I', alias, c), ', ' order by i)
    from ai.vectorizers v, unnest(v.key_columns) with ordinality as k(c, i) where v.id = vid
$$;

create or replace function ai_internal._vectorizer_id(p_name text) returns int
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

-- May this role change this vectorizer's queue and chunks?  Its source table's owner (and members
-- of that role) and pgmind administrators.  The row-level security of the queue uses it.
create or replace function ai_internal._owns_vectorizer(vid int, role_name name) returns boolean
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce((select ai_internal._is_admin(role_name) or pg_has_role(role_name, v.owner, 'MEMBER')
                     from ai.vectorizers v where v.id = vid), false)
$$;

create or replace function ai_internal._check_vectorizer_owner(vid int) returns void
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    o name;
begin
    select owner into o from ai.vectorizers where id = vid;
    if not found then
        raise exception 'vectorizer % does not exist', vid
            using errcode = '42704', hint = 'list them with select * from ai.vectorizer_status';
    end if;
    if not (ai_internal._is_admin(ai_internal._session_role()) or pg_has_role(ai_internal._session_role(), o, 'MEMBER')) then
        raise exception 'must own the source table (owner %) to change its vectorizer', o
            using errcode = '42501', hint = 'run it as the table''s owner or a pgmind administrator';
    end if;
end $$;

-- The versions a change must be queued for (every live one: the active and a building one).
create or replace function ai_internal._live_versions(vid int) returns int[]
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce(array_agg(version order by version), '{}') from ai.vectorizer_versions where vectorizer_id = vid
$$;

-- Queue keys for every live version.  Called by the generated trigger, which runs as the table's
-- owner; these run with the caller's rights, and the queue's row-level security lets a role touch
-- only the queue of vectorizers whose table it owns.
create or replace function ai_internal._enqueue(vid int, keys jsonb[]) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    insert into ai.vectorizer_queue (vectorizer_id, version, key)
    select vid, ver, k from unnest(ai_internal._live_versions(vid)) as ver, unnest(keys) as k
    where k is not null
    on conflict (vectorizer_id, version, key) do update
        set seq = nextval('ai.vectorizer_queue_seq'), queued_at = now(), attempts = 0,
            next_attempt_at = now(), last_error = null;
    delete from ai._vectorizer_errors e where e.vectorizer_id = vid and e.key = any (keys);
end $$;

-- Queue every row of the source for one version (backfill, re-embedding into a new version):
-- reads the source with the caller's rights.
create or replace function ai_internal._enqueue_all(vid int, p_version int) returns bigint
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    n bigint;
begin
    -- (ai_internal._vectorizer_info checks the caller owns the vectorizer)
    execute format('insert into ai.vectorizer_queue (vectorizer_id, version, key)
                    select $1, $2, %s from %s s
                    on conflict (vectorizer_id, version, key) do update
                        set seq = nextval(''ai.vectorizer_queue_seq''), queued_at = now(), attempts = 0,
                            next_attempt_at = now(), last_error = null',
                   ai_internal._key_json(vid, 's'), (ai_internal._vectorizer_info(vid)).source)
        using vid, p_version;
    get diagnostics n = row_count;
    return n;
end $$;

-- Remove the chunks of deleted (or re-keyed) source rows from every version, and their queue
-- entries.  The queue rows go first: a worker that holds them finishes its write before this
-- deletes what it wrote.  With the caller's rights (the table owner's, from the trigger).
create or replace function ai_internal._forget(vid int, keys jsonb[]) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    ver record;
begin
    delete from ai.vectorizer_queue q where q.vectorizer_id = vid and q.key = any (keys);
    delete from ai._vectorizer_errors e where e.vectorizer_id = vid and e.key = any (keys);
    for ver in select * from ai_internal._vectorizer_stores(vid) loop
        execute format('delete from %I.%I s where (%s) in (select %s from unnest($1) as k)',
                       ver.dest_schema, ver.store_table, ai_internal._key_cols(vid, 's'), ai_internal._key_from_json(vid, 'k'))
            using keys;
    end loop;
end $$;

create or replace function ai_internal._forget_all(vid int) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    ver record;
begin
    delete from ai.vectorizer_queue q where q.vectorizer_id = vid;
    delete from ai._vectorizer_errors e where e.vectorizer_id = vid;
    for ver in select * from ai_internal._vectorizer_stores(vid) loop
        execute format('truncate %I.%I', ver.dest_schema, ver.store_table);
    end loop;
end $$;

-- The functions a vectorizer runs as its table's owner, generated by create_vectorizer in the
-- owner's schema, owned by the owner, SECURITY DEFINER and executable by nobody else:
--   <name>_vectorizer_trigger()   the trigger: queues inserts (statement level), changed content or
--                                 keys; deletes and truncates remove chunks at once
--   <name>_vectorizer_content(keys jsonb[])                    (key, content) of those rows
--   <name>_vectorizer_write(store, remove, keys, seqs, chunks, embeddings)   replaces their chunks
--   <name>_vectorizer_activate(new_store, old_store)           points the view at a new version
-- Everything the table owner wrote (the content expression) and everything the owner can change
-- (the source and chunk tables, their triggers, defaults, policies) is only ever touched inside
-- these functions.  PostgreSQL refuses SET ROLE inside a SECURITY DEFINER function, so the worker,
-- whose session user is an administrator, never runs the owner's code with more than the owner's
-- rights; it checks each function is still SECURITY DEFINER and the owner's before the call.
create or replace function ai_internal._owner_functions_sql(vid int) returns text[]
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    v ai.vectorizers;
    keys_differ text;
    vschema name := ai_internal._vector_schema();
    store_pattern text;
begin
    perform ai_internal._check_vectorizer_owner(vid);   -- (they hold the owner's content expression)
    select * into v from ai.vectorizers where id = vid;
    select string_agg(format('old.%1$I is distinct from new.%1$I', c), ' or ') into keys_differ
    from unnest(v.key_columns) c;
    store_pattern := '^' || v.name || '_chunks_v[0-9]+$';
    return array[
        format($f$create or replace function %1$I.%2$I() returns trigger language plpgsql security definer
                  set search_path = pg_catalog, pg_temp as %3$L$f$,
               v.dest_schema, v.name || '_vectorizer_trigger', format($b$
        declare
            changed boolean;
        begin
            if tg_op = 'INSERT' then
                perform ai_internal._enqueue(%1$s, array(select %2$s from new_rows n));
            elsif tg_op = 'UPDATE' then
                if %3$s then
                    perform ai_internal._forget(%1$s, array[%4$s]);
                    perform ai_internal._enqueue(%1$s, array[%5$s]);
                else
                    -- a content expression that fails on the old or the new row must never fail the
                    -- user's write (the one that fixes the row included): queue it, and the worker
                    -- embeds it or quarantines it with the expression's error
                    begin
                        changed := (select (%6$s)::text from (select old.*) s) is distinct from
                                   (select (%6$s)::text from (select new.*) s);
                    exception when others then
                        changed := true;
                    end;
                    if changed then
                        perform ai_internal._enqueue(%1$s, array[%5$s]);
                    end if;
                end if;
            elsif tg_op = 'DELETE' then
                perform ai_internal._forget(%1$s, array[%4$s]);
            elsif tg_op = 'TRUNCATE' then
                perform ai_internal._forget_all(%1$s);
            end if;
            return null;
        end $b$, vid, ai_internal._key_json(vid, 'n'), keys_differ, ai_internal._key_json(vid, 'old'), ai_internal._key_json(vid, 'new'),
               v.content)),
        -- (language sql: the content expression is checked when the function is created)
        format($f$create or replace function %1$I.%2$I(keys jsonb[]) returns table (key jsonb, content text)
                  language sql stable security definer set search_path = pg_catalog, pg_temp as %3$L$f$,
               v.dest_schema, v.name || '_vectorizer_content', format(
                  'select %s, (%s)::text from %s s where (%s) in (select %s from unnest(keys) as k)',
                  ai_internal._key_json(vid, 's'), v.content, v.source, ai_internal._key_cols(vid, 's'), ai_internal._key_from_json(vid, 'k'))),
        format($f$create or replace function %1$I.%2$I(store name, remove jsonb[], keys jsonb[], seqs int[],
                      chunks text[], embeddings %3$I.vector[]) returns bigint
                  language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as %4$L$f$,
               v.dest_schema, v.name || '_vectorizer_write', vschema, format($b$
        declare
            n bigint;
        begin
            if store !~ %1$L then
                raise exception 'not a chunk table of this vectorizer: %%', store using errcode = '42501';
            end if;
            execute format(%2$L, %4$L, store) using remove;
            execute format(%3$L, %4$L, store) using keys, seqs, chunks, embeddings;
            get diagnostics n = row_count;
            return n;
        end $b$, store_pattern,
            format('delete from %%I.%%I s where (%s) in (select %s from unnest($1) as k)',
                   ai_internal._key_cols(vid, 's'), ai_internal._key_from_json(vid, 'k')),
            format('insert into %%I.%%I (%s, chunk_seq, chunk, embedding) select %s, u.seq, u.chunk, u.embedding
                    from unnest($1, $2, $3, $4) as u(k, seq, chunk, embedding)',
                   (select string_agg(format('%I', c), ', ') from unnest(v.key_columns) c), ai_internal._key_from_json(vid, 'k')),
            v.dest_schema)),
        format($f$create or replace function %1$I.%2$I(new_store name, old_store name) returns void
                  language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as %3$L$f$,
               v.dest_schema, v.name || '_vectorizer_activate', format($b$
        declare
            g record;
        begin
            if new_store !~ %1$L or old_store !~ %1$L then
                raise exception 'not a chunk table of this vectorizer' using errcode = '42501';
            end if;
            execute format('create or replace view %%I.%%I as %%s', %2$L, %3$L,
                           ai_internal._view_sql(%2$L, new_store, %4$L));
            -- whoever could read the old version's chunks can read the new one's
            for g in select grantee, privilege_type from information_schema.role_table_grants
                     where table_schema = %2$L and table_name = old_store and grantee <> current_user loop
                execute format('grant %%s on %%I.%%I to %%I', g.privilege_type, %2$L, new_store, g.grantee);
            end loop;
            execute format('drop table if exists %%I.%%I', %2$L, old_store);
        end $b$, store_pattern, v.dest_schema, v.dest_view, v.key_columns))
    ];
end $$;

-- The signatures of those functions, for grants and drops.
create or replace function ai_internal._owner_function_names(vid int) returns text[]
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select array[format('%I.%I()', v.dest_schema, v.name || '_vectorizer_trigger'),
                 format('%I.%I(jsonb[])', v.dest_schema, v.name || '_vectorizer_content'),
                 format('%I.%I(name, jsonb[], jsonb[], int[], text[], %I.vector[])', v.dest_schema,
                        v.name || '_vectorizer_write', ai_internal._vector_schema()),
                 format('%I.%I(name, name)', v.dest_schema, v.name || '_vectorizer_activate')]
    from ai.vectorizers v where v.id = vid
$$;

-- Creates (or re-creates, on upgrade) a vectorizer's owner functions and triggers.  Runs with the
-- caller's rights; the functions end up owned by the table's owner.
create or replace function ai_internal._install_owner_functions(vid int) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    stmt text;
    fn text;
    info record;
    names text[];
begin
    select * into info from ai_internal._vectorizer_info(vid);
    -- the functions run as the registry's owner: it must be the table's owner now (the catalog's
    -- word, not only the registry's), or a changed registry row would make them run as someone else
    if info.owner is distinct from (select c.relowner::regrole::name from pg_class c where c.oid = info.source) then
        raise exception 'vectorizer "%" says its table % belongs to %, but it belongs to %', info.name, info.source,
                        info.owner, (select c.relowner::regrole::name from pg_class c where c.oid = info.source)
            using errcode = '42501',
                  hint = 'drop the vectorizer and create it again as the table''s owner';
    end if;
    foreach stmt in array ai_internal._owner_functions_sql(vid) loop
        execute stmt;
    end loop;
    names := ai_internal._owner_function_names(vid);
    foreach fn in array names loop
        execute format('revoke all on function %s from public', fn);
        if (select proowner::regrole::name from pg_proc where oid = fn::regprocedure) <> info.owner then
            execute format('alter function %s owner to %I', fn, info.owner);
        end if;
    end loop;
    -- the workers call the content, write and activate functions as pgmind's service role (which
    -- needs to find them in their schema; the schema's owner can grant that, and install does)
    if exists (select 1 from pg_roles where rolname = 'pgmind_service') then
        execute format('grant execute on function %s, %s, %s to pgmind_service', names[2], names[3], names[4]);
        if not has_schema_privilege('pgmind_service', info.dest_schema, 'usage') then
            begin
                execute format('grant usage on schema %I to pgmind_service', info.dest_schema);
            exception when insufficient_privilege then
                raise warning 'pgmind''s workers cannot reach schema % yet', info.dest_schema
                    using hint = format('its owner (or `pgmind install`, as a superuser) can run: '
                                        'grant usage on schema %I to pgmind_service', info.dest_schema);
            end;
        end if;
    end if;
    execute format('create or replace trigger %I after insert on %s referencing new table as new_rows
                    for each statement execute function %s', info.name || '_vectorizer_insert', info.source, names[1]);
    execute format('create or replace trigger %I after update or delete on %s for each row execute function %s',
                   info.name || '_vectorizer_change', info.source, names[1]);
    execute format('create or replace trigger %I after truncate on %s for each statement execute function %s',
                   info.name || '_vectorizer_truncate', info.source, names[1]);
end $$;

-- Records a new vectorizer.  Everything but the caller's choices (name, content, model, chunking,
-- index) is read from the catalog here, not taken from the caller.
create or replace function ai_internal._register_vectorizer(
    p_name text, p_source regclass, p_content text, p_model text, p_chunking jsonb, p_index jsonb, p_caller name)
returns int language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int;
    table_owner name;
    v_schema name;
    key_cols name[];
    key_typs text[];
    m record;
begin
    perform ai_internal._check_caller(p_caller);
    select c.relowner::regrole::name, c.relnamespace::regnamespace::name into table_owner, v_schema
    from pg_class c where c.oid = p_source and c.relkind in ('r', 'p');
    if table_owner is null then
        raise exception '% is not a table', p_source using errcode = '42809', hint = 'a vectorizer reads a table';
    end if;
    if not pg_has_role(p_caller, table_owner, 'MEMBER') then
        raise exception 'must own table % to create a vectorizer on it', p_source
            using errcode = '42501', hint = format('run it as %s, the table''s owner', table_owner);
    end if;
    if p_name is null or p_name !~ '^[a-z_][a-z0-9_]{0,47}$' then
        raise exception 'invalid vectorizer name "%"', p_name
            using errcode = '22023', hint = 'use lower-case letters, digits and _ (up to 48), e.g. name => ''docs''';
    end if;
    if exists (select 1 from ai.vectorizers v where v.name = p_name) then
        raise exception 'vectorizer "%" already exists', p_name
            using errcode = '42710', hint = 'drop it with ai.drop_vectorizer, or change it with ai.alter_vectorizer';
    end if;
    select array_agg(a.attname order by k.i), array_agg(format_type(a.atttypid, a.atttypmod) order by k.i)
      into key_cols, key_typs
    from pg_index x cross join unnest(x.indkey) with ordinality as k(attnum, i)
    join pg_attribute a on a.attrelid = x.indrelid and a.attnum = k.attnum
    where x.indrelid = p_source and x.indisprimary;
    if key_cols is null then
        raise exception 'table % has no primary key', p_source
            using errcode = '42P16', hint = 'add one: alter table ... add primary key (...)';
    end if;
    select * into m from ai_internal._vectorizer_model(p_model, p_caller);
    insert into ai.vectorizers (name, source, key_columns, key_types, content, owner, dest_schema, dest_view, trigger_fn)
    values (p_name, p_source, key_cols, key_typs, p_content, table_owner, v_schema, p_name || '_chunks',
            format('%I.%I()', v_schema, p_name || '_vectorizer_trigger'))
    returning id into vid;
    insert into ai.vectorizer_versions (vectorizer_id, version, model, chunking, index_spec, dimensions, store_table,
                                        status, activated_at)
    values (vid, 1, p_model, ai_internal._check_chunking(p_chunking), ai_internal._check_index(p_index), m.dimensions,
            p_name || '_chunks_v1', 'active', now());
    return vid;
end $$;

-- Check the model for a vectorizer: an embedding model the caller may use, with a known dimension.
create or replace function ai_internal._vectorizer_model(p_model text, caller name)
returns table (model_id text, provider text, model_type text, model_name text, url text,
               header_fn regproc, in_fn regproc, out_fn regproc, options jsonb, dimensions int)
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    m record;
begin
    select * into m from ai_internal._model_for_call(p_model, caller);
    if m.model_type not in ('embedding', 'image_embedding') then
        raise exception 'model "%" is a % model, not an embedding model', p_model, m.model_type
            using errcode = '22023', hint = 'pick an embedding or image model from select * from ai.models';
    end if;
    if m.dimensions is null then
        raise exception 'model "%" has no known dimension', p_model
            using errcode = '22023', hint = 'register it with options => ''{"dimensions": N}'', or while pgmind serve runs';
    end if;
    return query select m.model_id, m.provider, m.model_type, m.model_name, m.url, m.header_fn, m.in_fn, m.out_fn,
                        m.options, m.dimensions;
end $$;

-- A JSON object spec (null is {}), with only the allowed keys (when given): what chunking and index
-- specs share.  ``what`` names it in the messages.
create or replace function ai_internal._spec_object(spec jsonb, what text, allowed text[], hint text) returns jsonb
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    unknown text;
begin
    if spec is null or jsonb_typeof(spec) = 'null' then
        spec := '{}';
    end if;
    if jsonb_typeof(spec) <> 'object' then
        raise exception '% must be a JSON object, got %', what, jsonb_typeof(spec) using errcode = '22023', hint = hint;
    end if;
    select string_agg(k, ', ' order by k) into unknown from jsonb_object_keys(spec) k where k <> all (allowed);
    if unknown is not null then
        raise exception 'unknown % settings: %', what, unknown using errcode = '22023', hint = hint;
    end if;
    return spec;
end $$;

-- A chunking spec, completed with the defaults.  The one rule for SQL and the worker, whose
-- ChunkingConfig.from_json accepts exactly what this accepts (one table of cases runs through both:
-- tests/security/test_vectorizer_isolation.py): a JSON object with only these keys; method one of
-- recursive, markdown, html, none; max_tokens an integer 8..8192; overlap an integer,
-- 0 <= 2 * overlap < max_tokens.
create or replace function ai_internal._check_chunking(chunking jsonb) returns jsonb
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    chunking := ai_internal._spec_object(chunking, 'chunking', array['method', 'max_tokens', 'overlap', 'title'],
                                         'e.g. {"method": "recursive", "max_tokens": 256, "overlap": 32}');
    chunking := '{"method": "recursive", "max_tokens": 256, "overlap": 32}'::jsonb || chunking;
    if jsonb_typeof(chunking->'method') is distinct from 'string'
       or chunking->>'method' not in ('recursive', 'markdown', 'html', 'none') then
        raise exception 'unknown chunking method %', chunking->'method'
            using errcode = '22023', hint = 'method is one of recursive, markdown, html, none';
    end if;
    -- (case, not or: the comparison casts, so it may only run once both are whole numbers)
    if (case when ai_internal._json_count(chunking->'max_tokens', 8, 8192)
                  and ai_internal._json_count(chunking->'overlap', 0, 8192)
             then (chunking->>'overlap')::numeric * 2 >= (chunking->>'max_tokens')::numeric else true end) then
        raise exception 'invalid chunk sizes: max_tokens % and overlap %', chunking->'max_tokens', chunking->'overlap'
            using errcode = '22023', hint = 'max_tokens is an integer from 8 to 8192, overlap an integer under half of it';
    end if;
    if chunking ? 'title' and jsonb_typeof(chunking->'title') is distinct from 'boolean' then
        raise exception 'chunking title must be true or false, got %', chunking->'title'
            using errcode = '22023', hint = 'e.g. {"method": "markdown", "title": true}';
    end if;
    return chunking;
end $$;

-- An index spec, completed with the defaults: hnsw (m 2..100, ef_construction 4..1000 and at
-- least 2 * m), ivfflat (lists 1..32768) or none.
create or replace function ai_internal._check_index(index_spec jsonb) returns jsonb
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    t text;
    allowed text[];
    hint text := 'e.g. {"type": "hnsw", "m": 16, "ef_construction": 64} or {"type": "ivfflat", "lists": 100}';
begin
    index_spec := ai_internal._spec_object(index_spec, 'index', null, hint);
    t := coalesce(index_spec->>'type', 'hnsw');
    allowed := case t when 'hnsw' then array['type', 'm', 'ef_construction'] when 'ivfflat' then array['type', 'lists']
                      when 'none' then array['type'] end;
    if allowed is null then
        raise exception 'unknown index type "%"', t using errcode = '22023', hint = 'index type is one of hnsw, ivfflat, none';
    end if;
    perform ai_internal._spec_object(index_spec, t || ' index', allowed, hint);
    if t = 'hnsw' then
        index_spec := '{"type": "hnsw", "m": 16, "ef_construction": 64}'::jsonb || index_spec;
        if (case when ai_internal._json_count(index_spec->'m', 2, 100)
                      and ai_internal._json_count(index_spec->'ef_construction', 4, 1000)
                 then (index_spec->>'ef_construction')::numeric < 2 * (index_spec->>'m')::numeric else true end) then
            raise exception 'invalid hnsw settings: m % and ef_construction %', index_spec->'m', index_spec->'ef_construction'
                using errcode = '22023', hint = 'm is an integer 2..100, ef_construction an integer 4..1000 and at least twice m';
        end if;
        index_spec := jsonb_build_object('type', 'hnsw', 'm', (index_spec->>'m')::numeric::int,
                                         'ef_construction', (index_spec->>'ef_construction')::numeric::int);
    elsif t = 'ivfflat' then
        index_spec := '{"type": "ivfflat", "lists": 100}'::jsonb || index_spec;
        if not ai_internal._json_count(index_spec->'lists', 1, 32768) then
            raise exception 'invalid ivfflat lists %', index_spec->'lists'
                using errcode = '22023', hint = 'lists is an integer 1..32768 (about rows / 1000)';
        end if;
        index_spec := jsonb_build_object('type', 'ivfflat', 'lists', (index_spec->>'lists')::numeric::int);
    else
        index_spec := '{"type": "none"}';
    end if;
    return index_spec;
end $$;

-- Creates the store table of one version (with the caller's rights: it belongs to the table owner).
create or replace function ai_internal._create_store(vid_source regclass, p_schema name, p_store name,
                                            key_columns name[], key_types text[], dims int, index_spec jsonb,
                                            metric text)
returns void language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    cols text;
    opclass text;
    vschema name := ai_internal._vector_schema();
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
    -- the training runner reads chunks as pgmind's service role, from this plain table (never the view)
    if exists (select 1 from pg_roles where rolname = 'pgmind_service') then
        execute format('grant select on %I.%I to pgmind_service', p_schema, p_store);
    end if;
    execute format('comment on table %I.%I is %L', p_schema, p_store,
                   format('pgmind vectorizer chunks of %s; written by pgmind workers', vid_source));
    index_spec := ai_internal._check_index(index_spec);
    opclass := case coalesce(metric, 'cosine') when 'cosine' then 'vector_cosine_ops'
                                                when 'l2' then 'vector_l2_ops' when 'ip' then 'vector_ip_ops' end;
    if index_spec->>'type' = 'hnsw' then
        execute format('create index on %I.%I using hnsw (embedding %I.%I) with (m = %s, ef_construction = %s)',
                       p_schema, p_store, vschema, opclass, (index_spec->>'m')::int,
                       (index_spec->>'ef_construction')::int);
    elsif index_spec->>'type' = 'ivfflat' then
        execute format('create index on %I.%I using ivfflat (embedding %I.%I) with (lists = %s)',
                       p_schema, p_store, vschema, opclass, (index_spec->>'lists')::int);
    end if;
end $$;

-- The destination view: the active version's table, its embedding column without a dimension, so a
-- new version of another dimension replaces the view in place (grants on it are kept).  The
-- index still serves the view: the planner looks through the cast.
create or replace function ai_internal._view_sql(p_schema name, p_store name, key_columns name[]) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select format('select %s, chunk_seq, chunk, embedding::%I.vector as embedding, fts from %I.%I',
                  (select string_agg(format('%I', c), ', ') from unnest(key_columns) c),
                  ai_internal._vector_schema(), p_schema, p_store)
$$;

-- With the caller's rights: the caller must own the table (or belong to its owner role).  The
-- checks of the arguments live in ai_internal._register_vectorizer, ai_internal._check_chunking and ai_internal._check_index.
-- (the signature grew modality, ocr and labels: the old one goes first)
drop function if exists ai.create_vectorizer(regclass, text, text, text, jsonb, jsonb, boolean);
-- An image model makes an image vectorizer: content is a bytea column, or a path or URL that is
-- loaded under ai.load_file's allow-list; each row's "chunk" is a description of its image (name,
-- labels, and with ocr => true the text in it) with the image's vector.
create or replace function ai_internal._set_image_config(vid int, ocr boolean, labels int) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._check_vectorizer_owner(vid);
    if labels is null or labels < 0 or labels > 20 then
        raise exception 'labels must be between 0 and 20, got %', labels using errcode = '22023',
            hint = 'how many of the image model''s labels describe each image; 0 for none';
    end if;
    update ai.vectorizers set config = config || jsonb_build_object('modality', 'image', 'ocr', coalesce(ocr, false),
                                                                    'labels', labels)
    where id = vid;
end $$;

create or replace function ai.create_vectorizer(
    source regclass, name text default null, content text default null, model text default null,
    chunking jsonb default null, index jsonb default null, backfill boolean default true,
    modality text default null, ocr boolean default false, labels int default 5)
returns int language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    v_table name;
    text_cols name[];
    vid int;
    v record;
    ver record;
    m record;
begin
    if source is null then
        raise exception 'source table is required' using errcode = '22023', hint = 'pass it as ''public.docs''::regclass';
    end if;
    if modality is not null and modality not in ('text', 'image') then
        raise exception 'unknown modality "%"', modality using errcode = '22023', hint = 'modality is text or image';
    end if;
    model := coalesce(model, case when modality = 'image' then 'image-features' else 'e5-small' end);
    select * into m from ai_internal._vectorizer_model(model, current_user);
    if modality is not null and (modality = 'image') <> (m.model_type = 'image_embedding') then
        raise exception 'model "%" is a % model, not for modality %', model, m.model_type, modality
            using errcode = '22023', hint = case when modality = 'image' then 'pick an image model, e.g. image-features'
                                                 else 'pick a text embedding model, e.g. e5-small' end;
    end if;
    if m.model_type = 'image_embedding' and content is null then
        raise exception 'content is required for an image vectorizer'
            using errcode = '22023', hint = 'name the bytea column with the image, or the column with its path or URL';
    end if;
    select c.relname into v_table from pg_class c where c.oid = source;
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
    if m.model_type = 'embedding' and exists (
            select 1 from pg_attribute a where a.attrelid = source and not a.attisdropped and a.attnum > 0
               and format('%I', a.attname) = btrim(content) and a.atttypid = 'bytea'::regtype) then
        raise exception 'column % holds bytes: text model "%" would embed their hex digits', content, model
            using errcode = '22023', hint = 'for pictures use an image model: modality => ''image''';
    end if;
    vid := ai_internal._register_vectorizer(coalesce(name, v_table), source, content, model, chunking, index, current_user);
    if m.model_type = 'image_embedding' then
        perform ai_internal._set_image_config(vid, ocr, labels);
    end if;
    select * into v from ai_internal._vectorizer_info(vid);
    select * into ver from ai_internal._vectorizer_stores(vid) limit 1;
    if to_regclass(format('%I.%I', v.dest_schema, v.dest_view)) is not null
       or to_regclass(format('%I.%I', v.dest_schema, ver.store_table)) is not null then
        raise exception 'relation %.% already exists', v.dest_schema, v.dest_view
            using errcode = '42P07', hint = 'pick another name => for the vectorizer';
    end if;
    begin
        perform ai_internal._install_owner_functions(vid);
    exception when syntax_error or undefined_column or undefined_function or datatype_mismatch
                   or undefined_table or ambiguous_column or grouping_error or feature_not_supported then
        raise exception 'content % is not a valid expression over %: %', content, source, sqlerrm
            using errcode = '42601', hint = 'use the table''s column names, e.g. title || E''\n\n'' || body';
    end;
    perform ai_internal._create_store(source, v.dest_schema, ver.store_table, v.key_columns, v.key_types, m.dimensions,
                             index, coalesce(m.options->>'metric', 'cosine'));
    execute format('create view %I.%I as %s', v.dest_schema, v.dest_view,
                   ai_internal._view_sql(v.dest_schema, ver.store_table, v.key_columns));
    if backfill then
        perform ai_internal._enqueue_all(vid, 1);
    end if;
    return vid;
end $$;

create or replace function ai_internal._unregister_vectorizer(vid int) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._check_vectorizer_owner(vid);
    delete from ai.vectorizer_progress where vectorizer_id = vid;
    delete from ai.vectorizers where id = vid;
end $$;

create or replace function ai.drop_vectorizer(name text, drop_chunks boolean default true) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
    v record;
    ver record;
    fn text;
begin
    select * into v from ai_internal._vectorizer_info(vid);   -- (only for its owner: it checks)
    execute format('drop trigger if exists %I on %s', name || '_vectorizer_insert', v.source);
    execute format('drop trigger if exists %I on %s', name || '_vectorizer_change', v.source);
    execute format('drop trigger if exists %I on %s', name || '_vectorizer_truncate', v.source);
    foreach fn in array ai_internal._owner_function_names(vid) loop
        if to_regprocedure(fn) is not null then
            execute format('drop function %s', fn);
        end if;
    end loop;
    if drop_chunks then
        execute format('drop view if exists %I.%I', v.dest_schema, v.dest_view);
        for ver in select * from ai_internal._vectorizer_stores(vid) loop
            execute format('drop table if exists %I.%I', v.dest_schema, ver.store_table);
        end loop;
    end if;
    perform ai_internal._unregister_vectorizer(vid);
end $$;

-- What a table owner may read about its vectorizer (the registry itself is private).
select ai_internal._drop_if_result_differs('ai_internal._vectorizer_info(int)', 'TABLE(name text, source regclass, owner name, dest_schema name, dest_view name, key_columns name[], key_types text[], content text)');
create or replace function ai_internal._vectorizer_info(vid int)
returns table (name text, source regclass, owner name, dest_schema name, dest_view name, key_columns name[],
               key_types text[], content text)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._check_vectorizer_owner(vid);
    return query select v.name, v.source, v.owner, v.dest_schema, v.dest_view, v.key_columns, v.key_types, v.content
                 from ai.vectorizers v where v.id = vid;
end $$;

select ai_internal._drop_if_result_differs('ai_internal._vectorizer_stores(int)', 'TABLE(version integer, dest_schema name, store_table name, status text, model text)');
create or replace function ai_internal._vectorizer_stores(vid int)
returns table (version int, dest_schema name, store_table name, status text, model text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select ver.version, v.dest_schema, ver.store_table, ver.status, ver.model
    from ai.vectorizer_versions ver join ai.vectorizers v on v.id = ver.vectorizer_id
    where ver.vectorizer_id = vid order by ver.version
$$;

-- Change the model, chunking or index: a new version is embedded in the background while the old
-- one keeps serving; a worker switches the view over once the new one is complete.  Returns the
-- new version and its store table's name (derived here, never taken from the caller).
create or replace function ai_internal._add_version(vid int, p_model text, p_chunking jsonb, p_index jsonb,
                                           out version int, out store_table name)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    m record;
begin
    perform ai_internal._check_vectorizer_owner(vid);
    if exists (select 1 from ai.vectorizer_versions where vectorizer_id = vid and status = 'building') then
        raise exception 'a new version of this vectorizer is already being built'
            using errcode = '55006', hint = 'wait for it (select * from ai.vectorizer_status), then alter again';
    end if;
    select * into m from ai_internal._vectorizer_model(p_model, ai_internal._session_role());
    if ((select v.config->>'modality' from ai.vectorizers v where v.id = vid) = 'image') <> (m.model_type = 'image_embedding') then
        raise exception 'model "%" is a % model; this vectorizer embeds %', p_model, m.model_type,
                        case when m.model_type = 'image_embedding' then 'texts' else 'images' end
            using errcode = '22023', hint = 'pick a model of the same kind, or create another vectorizer';
    end if;
    select max(ver.version) + 1 into version from ai.vectorizer_versions ver where ver.vectorizer_id = vid;
    store_table := (select v.name from ai.vectorizers v where v.id = vid) || '_chunks_v' || version;
    insert into ai.vectorizer_versions (vectorizer_id, version, model, chunking, index_spec, dimensions, store_table, status)
    values (vid, version, p_model, ai_internal._check_chunking(p_chunking), ai_internal._check_index(p_index), m.dimensions,
            store_table, 'building');
end $$;

create or replace function ai.alter_vectorizer(name text, model text default null, chunking jsonb default null,
                                               index jsonb default null) returns int
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
    v record;
    cur record;
    m record;
    added record;
begin
    select * into v from ai_internal._vectorizer_info(vid);   -- (only for its owner: it checks)
    select vv.* into cur from ai.vectorizer_status vv where vv.name = alter_vectorizer.name and vv.status = 'active';
    select * into m from ai_internal._vectorizer_model(coalesce(model, cur.model), current_user);
    select * into added from ai_internal._add_version(vid, m.model_id, coalesce(chunking, cur.chunking),
                                             coalesce(index, cur.index_spec));
    perform ai_internal._create_store(v.source, v.dest_schema, added.store_table, v.key_columns, v.key_types, m.dimensions,
                             coalesce(index, cur.index_spec), coalesce(m.options->>'metric', 'cosine'));
    perform ai_internal._enqueue_all(vid, added.version);
    return added.version;
end $$;

-- For a worker, when a building version has nothing left in its queue: the registry switches to it
-- and this returns the store table of the version it replaces, which the worker then has the
-- owner's <name>_vectorizer_activate point the view away from and drop (same transaction).
-- Returns null when the version is not ready.  Workers only: not executable by others.
select ai_internal._drop_if_result_differs('ai_internal._activate_version(int, int)', 'name');
create or replace function ai_internal._activate_version(vid int, p_version int) returns name
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    old record;
begin
    perform 1 from ai.vectorizers where id = vid for update;
    if not exists (select 1 from ai.vectorizer_versions
                   where vectorizer_id = vid and version = p_version and status = 'building')
       or exists (select 1 from ai.vectorizer_queue where vectorizer_id = vid and version = p_version) then
        return null;
    end if;
    select * into old from ai.vectorizer_versions where vectorizer_id = vid and status = 'active';
    delete from ai.vectorizer_versions where vectorizer_id = vid and version = old.version;
    update ai.vectorizer_versions set status = 'active', activated_at = now()
    where vectorizer_id = vid and version = p_version;
    return old.store_table;
end $$;

-- Queue every row again (for example after the model's weights changed); the worker re-embeds.
create or replace function ai.vectorizer_backfill(name text) returns bigint
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
    n bigint := 0;
    ver record;
begin
    for ver in select * from ai_internal._vectorizer_stores(vid) loop
        n := n + ai_internal._enqueue_all(vid, ver.version);
    end loop;
    return n;
end $$;

-- Re-queue quarantined rows (after fixing the data or the model).
create or replace function ai.vectorizer_retry(name text) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
    n bigint;
begin
    perform ai_internal._check_vectorizer_owner(vid);
    with moved as (
        delete from ai._vectorizer_errors e where e.vectorizer_id = vid returning e.version, e.key)
    insert into ai.vectorizer_queue (vectorizer_id, version, key)
    select vid, version, key from moved
    on conflict (vectorizer_id, version, key) do update set next_attempt_at = now(), attempts = 0;
    get diagnostics n = row_count;
    return n;
end $$;

-- Is a chunk table still the plain table pgmind made, safe to read in another role's session?  Its
-- owner could have put code there that a read would run: a view, rules, row security, or a column
-- changed to a type of its own (whose casts and operators are the owner's functions).  So: an
-- ordinary table, no rules or row security, and every column of a built-in type or pgvector's.
create or replace function ai_internal._store_is_plain(rel regclass) returns boolean
language sql stable set search_path = pg_catalog, pg_temp as $$
    select exists (select 1 from pg_class c where c.oid = rel and c.relkind = 'r' and not c.relrowsecurity
                   and not c.relhasrules)
       and not exists (select 1 from pg_attribute a
                       where a.attrelid = rel and a.attnum > 0 and not a.attisdropped and a.atttypid >= 16384
                         and a.atttypid not in (select t.oid from pg_type t join pg_depend d
                                                  on d.classid = 'pg_type'::regclass and d.objid = t.oid
                                                 join pg_extension e on e.oid = d.refobjid
                                                where e.extname = 'vector'))
$$;

-- Rows embedded so far in a version (each embedded row has a chunk 0), with the caller's rights:
-- null where the caller cannot read the chunks, or where the table is not the plain table pgmind
-- made (a view or row security there would run its owner's code in the caller's session).
create or replace function ai_internal._vectorizer_done(p_schema name, p_store name) returns bigint
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    rel oid := to_regclass(format('%I.%I', p_schema, p_store));
    n bigint;
begin
    if rel is null or not has_table_privilege(rel, 'select') or not ai_internal._store_is_plain(rel) then
        return null;
    end if;
    execute format('select count(*) from only %I.%I where chunk_seq operator(pg_catalog.=) 0', p_schema, p_store)
        into n;
    return n;
end $$;

-- The queue and the quarantine: each role sees and changes only the rows of vectorizers whose table
-- it owns (the generated trigger runs as that owner); workers connect as an administrator.
alter table ai.vectorizer_queue enable row level security;
alter table ai._vectorizer_errors enable row level security;
drop policy if exists vectorizer_queue_owner on ai.vectorizer_queue;
create policy vectorizer_queue_owner on ai.vectorizer_queue
    using (ai_internal._owns_vectorizer(vectorizer_id, current_user))
    with check (ai_internal._owns_vectorizer(vectorizer_id, current_user));
drop policy if exists vectorizer_errors_owner on ai._vectorizer_errors;
create policy vectorizer_errors_owner on ai._vectorizer_errors
    using (ai_internal._owns_vectorizer(vectorizer_id, current_user));
grant select, insert, update, delete on ai.vectorizer_queue to public;
grant select, delete on ai._vectorizer_errors to public;
grant usage on sequence ai.vectorizer_queue_seq to public;

create or replace view ai.vectorizer_status as
select v.name, v.source::text as source, format('%I.%I', v.dest_schema, v.dest_view) as destination,
       ver.version, ver.status, ver.model, ver.chunking, ver.index_spec, ver.dimensions,
       coalesce(q.pending, 0) as pending, coalesce(q.leased, 0) as leased,
       ai_internal._vectorizer_done(v.dest_schema, ver.store_table) as done,
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
-- (and the model server's own /metrics, for the operator, reads every one as the service role)
where ai_internal._is_admin(current_user) or pg_has_role(current_user, v.owner, 'USAGE')
   or current_user = 'pgmind_service';

create or replace view ai.vectorizer_errors as
select v.name as vectorizer, e.version, e.key, e.error, e.sqlstate, e.attempts, e.failed_at
from ai._vectorizer_errors e join ai.vectorizers v on v.id = e.vectorizer_id
where ai_internal._is_admin(current_user) or pg_has_role(current_user, v.owner, 'USAGE');

-- (a worker's last error may quote any vectorizer's data: administrators only see it)
create or replace view ai.vectorizer_worker_status as
select worker_id, hostname, pid, started_at, heartbeat_at, now() - heartbeat_at as silent_for,
       rows_done, chunks_done, errors, case when ai_internal._is_admin(current_user) then last_error end as last_error
from ai.vectorizer_workers;

grant select on ai.vectorizer_status, ai.vectorizer_errors, ai.vectorizer_worker_status to public;

-- Vectorizers made by an earlier release get the current owner functions (idempotent).
do $$
declare
    vid int;
begin
    for vid in select id from ai.vectorizers loop
        begin
            perform ai_internal._install_owner_functions(vid);
        exception when insufficient_privilege then     -- (one broken vectorizer does not stop the install)
            raise warning 'vectorizer % was not updated: %', vid, sqlerrm;
        end;
    end loop;
end $$;

-- What the service role needs of existing vectorizers (install, on upgrade; new ones grant it
-- themselves in _install_owner_functions and _create_store): their owner functions and chunk tables.
create or replace function ai_internal._grant_vectorizers_to_service(vid int) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    v record;
    names text[];
begin
    for v in select x.id, x.dest_schema, ver.store_table from ai.vectorizers x
             join ai.vectorizer_versions ver on ver.vectorizer_id = x.id
             where vid is null or x.id = vid loop
        -- (only what is missing: a GRANT rewrites the catalog row even when nothing changes)
        if not has_schema_privilege('pgmind_service', v.dest_schema, 'usage') then
            execute format('grant usage on schema %I to pgmind_service', v.dest_schema);
        end if;
        if to_regclass(format('%I.%I', v.dest_schema, v.store_table)) is not null
           and not has_table_privilege('pgmind_service', format('%I.%I', v.dest_schema, v.store_table), 'select') then
            execute format('grant select on %I.%I to pgmind_service', v.dest_schema, v.store_table);
        end if;
        names := ai_internal._owner_function_names(v.id);
        for i in 2..4 loop
            if to_regprocedure(names[i]) is not null
               and not has_function_privilege('pgmind_service', to_regprocedure(names[i]), 'execute') then
                execute format('grant execute on function %s to pgmind_service', names[i]);
            end if;
        end loop;
    end loop;
end $$;

-- The worker's guard before it calls an owner function: it must be SECURITY DEFINER and the owner's,
-- and stay so until the worker's transaction ends (its pg_proc row is share-locked: ALTER and
-- CREATE OR REPLACE wait), or the owner could turn it into SECURITY INVOKER between the check and the
-- call and run as the service role.  (Locking a catalog row needs a superuser: hence a definer
-- function, executable by the service role only.)
create or replace function ai_internal._lock_owner_function(fn text, owner name) returns boolean
language sql volatile security definer set search_path = pg_catalog, pg_temp as $$
    select exists (select 1 from pg_catalog.pg_proc p
                   where p.oid = pg_catalog.to_regprocedure(fn) and p.prosecdef
                     and p.proowner = (select r.oid from pg_catalog.pg_roles r where r.rolname = owner)
                   for share of p)
$$;
