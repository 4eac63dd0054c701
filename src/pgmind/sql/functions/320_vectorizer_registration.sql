-- Registering a vectorizer: its model, chunking and index specs, its store table and view.

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
grant execute on function ai_internal._register_vectorizer(text, regclass, text, text, jsonb, jsonb, name) to public;

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
grant execute on function ai_internal._vectorizer_model(text, name) to public;

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
grant execute on function ai_internal._spec_object(jsonb, text, text[], text) to public;

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
grant execute on function ai_internal._check_chunking(jsonb) to public;

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
grant execute on function ai_internal._check_index(jsonb) to public;

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
grant execute on function ai_internal._create_store(regclass, name, name, name[], text[], integer, jsonb, text) to public;

-- The destination view: the active version's table, its embedding column without a dimension, so a
-- new version of another dimension replaces the view in place (grants on it are kept).  The
-- index still serves the view: the planner looks through the cast.
create or replace function ai_internal._view_sql(p_schema name, p_store name, key_columns name[]) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select format('select %s, chunk_seq, chunk, embedding::%I.vector as embedding, fts from %I.%I',
                  (select string_agg(format('%I', c), ', ') from unnest(key_columns) c),
                  ai_internal._vector_schema(), p_schema, p_store)
$$;
grant execute on function ai_internal._view_sql(name, name, name[]) to public;
