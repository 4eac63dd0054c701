-- The vectorizer API: create, drop, alter (a new version), backfill, retry; and the version
-- switch the worker asks for.

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
grant execute on function ai_internal._set_image_config(integer, boolean, integer) to public;

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
grant execute on function ai.create_vectorizer(regclass, text, text, text, jsonb, jsonb, boolean, text, boolean, integer) to public;

create or replace function ai_internal._unregister_vectorizer(vid int) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._check_vectorizer_owner(vid);
    delete from ai.vectorizer_progress where vectorizer_id = vid;
    delete from ai.vectorizers where id = vid;
end $$;
grant execute on function ai_internal._unregister_vectorizer(integer) to public;

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
grant execute on function ai.drop_vectorizer(text, boolean) to public;

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
grant execute on function ai_internal._vectorizer_info(integer) to public;

select ai_internal._drop_if_result_differs('ai_internal._vectorizer_stores(int)', 'TABLE(version integer, dest_schema name, store_table name, status text, model text)');
create or replace function ai_internal._vectorizer_stores(vid int)
returns table (version int, dest_schema name, store_table name, status text, model text)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select ver.version, v.dest_schema, ver.store_table, ver.status, ver.model
    from ai.vectorizer_versions ver join ai.vectorizers v on v.id = ver.vectorizer_id
    where ver.vectorizer_id = vid order by ver.version
$$;
grant execute on function ai_internal._vectorizer_stores(integer) to public;

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
grant execute on function ai_internal._add_version(integer, text, jsonb, jsonb) to public;

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
grant execute on function ai.alter_vectorizer(text, text, jsonb, jsonb) to public;

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
    -- a RAG threshold the owner set is a similarity on the old model's scale: with another model it
    -- goes, and the new model's calibrated one applies (ai.rag returns the threshold in force)
    update ai.vectorizers v set config = jsonb_set(v.config, '{rag}', (v.config->'rag') - 'threshold')
    where v.id = vid and v.config->'rag' ? 'threshold'
      and (select ver.model from ai.vectorizer_versions ver
           where ver.vectorizer_id = vid and ver.version = p_version) is distinct from old.model;
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
grant execute on function ai.vectorizer_backfill(text) to public;

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
grant execute on function ai.vectorizer_retry(text) to public;

-- Pause and resume (issue 39): a paused vectorizer's queue is not claimed by any worker or Ray
-- backfill (batches already claimed finish and are written); its triggers still queue changes, so
-- nothing is missed while paused.  Its table's owner (or a member of that role) and pgmind
-- administrators only.  Each returns whether it changed anything (false: it was already so).
create or replace function ai.pause_vectorizer(name text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
begin
    perform ai_internal._check_vectorizer_owner(vid);
    update ai.vectorizers set paused_at = now(), paused_by = ai_internal._session_role()
    where id = vid and paused_at is null;
    return found;
end $$;
grant execute on function ai.pause_vectorizer(text) to public;

create or replace function ai.resume_vectorizer(name text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
begin
    perform ai_internal._check_vectorizer_owner(vid);
    update ai.vectorizers set paused_at = null, paused_by = null where id = vid and paused_at is not null;
    return found;
end $$;
grant execute on function ai.resume_vectorizer(text) to public;

-- The Ray backfill's plan (issue 40), asked for by the role that starts it, which must own the
-- table (or be an administrator): the vectorizer's queue split into at most `shards` key ranges
-- per version, contiguous and covering every key (the first has no lower bound, the last no upper
-- one, so keys queued later fall in one too).  A shard is (version, after_key, upto_key]: keys
-- greater than after_key (null: no bound) and at most upto_key (null: no bound), with the rows
-- queued in it now.  A paused vectorizer is refused.
select ai_internal._drop_if_result_differs('ai.vectorizer_shards(text, int)', 'TABLE(version integer, after_key jsonb, upto_key jsonb, pending bigint)');
create or replace function ai.vectorizer_shards(name text, shards int)
returns table (version int, after_key jsonb, upto_key jsonb, pending bigint)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
begin
    perform ai_internal._check_vectorizer_owner(vid);
    if shards is null or shards < 1 or shards > 100000 then
        raise exception 'shards must be between 1 and 100000, got %', shards
            using errcode = '22023', hint = 'about four per Ray actor balances the load';
    end if;
    if (select v.paused_at is not null from ai.vectorizers v where v.id = vid) then
        raise exception 'vectorizer "%" is paused', name
            using errcode = '55000', hint = format('resume it first: select ai.resume_vectorizer(%L)', name);
    end if;
    -- (jsonb has no max(): each shard's last key is the row whose successor is in the next tile)
    return query
        with q as (
            select k.version, k.key, ntile(shards) over (partition by k.version order by k.key) as t
            from ai.vectorizer_queue k where k.vectorizer_id = vid),
        e as (
            select q.version, q.key, q.t, lead(q.t) over (partition by q.version order by q.key) as next_t,
                   count(*) over (partition by q.version, q.t) as n
            from q)
        select e.version, lag(e.key) over (partition by e.version order by e.t),
               case when e.next_t is null then null else e.key end, e.n
        from e where e.next_t is distinct from e.t
        order by e.version, e.t;
end $$;
grant execute on function ai.vectorizer_shards(text, int) to public;
