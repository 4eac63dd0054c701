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
grant execute on function ai.fts_text(text) to public;

-- The schema of the vector extension (types and operators are named with it).
create or replace function ai_internal._vector_schema() returns name
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (select extnamespace::regnamespace::name from pg_extension where extname = 'vector');
end
$$;
grant execute on function ai_internal._vector_schema() to public;

-- SQL fragments over a vectorizer's key columns (security definer: the registry is private, but
-- its key column names and types are in the catalog for everyone anyway).
--   ai_internal._key_json(id, 'n')          jsonb_build_object('id', n.id, ...)
--   ai_internal._key_from_json(id, 'k')     (k->>'id')::integer, ...
--   ai_internal._key_cols(id, 's')          s.id, ...
create or replace function ai_internal._key_json(vid int, alias text) returns text
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return (select 'jsonb_build_object(' || string_agg(format('%L, %I.%I', c, alias, c), ', ' order by i) || ')'
        from ai.vectorizers v, unnest(v.key_columns) with ordinality as k(c, i) where v.id = vid);
end
$$;
grant execute on function ai_internal._key_json(integer, text) to public;

create or replace function ai_internal._key_from_json(vid int, alias text) returns text
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return (select string_agg(format('(%I->>%L)::%s', alias, c, t), ', ' order by i)
        from ai.vectorizers v, unnest(v.key_columns, v.key_types) with ordinality as k(c, t, i) where v.id = vid);
end
$$;
grant execute on function ai_internal._key_from_json(integer, text) to public;

create or replace function ai_internal._key_cols(vid int, alias text) returns text
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return (select string_agg(format('%I.%I', alias, c), ', ' order by i)
        from ai.vectorizers v, unnest(v.key_columns) with ordinality as k(c, i) where v.id = vid);
end
$$;
grant execute on function ai_internal._key_cols(integer, text) to public;

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
grant execute on function ai_internal._vectorizer_id(text) to public;

-- May this role change this vectorizer's queue and chunks?  Its source table's owner (and members
-- of that role) and pgmind administrators.  The row-level security of the queue uses it.
create or replace function ai_internal._owns_vectorizer(vid int, role_name name) returns boolean
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce((select ai_internal._is_admin(role_name) or pg_has_role(role_name, v.owner, 'MEMBER')
                     from ai.vectorizers v where v.id = vid), false)
$$;
grant execute on function ai_internal._owns_vectorizer(integer, name) to public;

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
grant execute on function ai_internal._check_vectorizer_owner(integer) to public;

-- The versions a change must be queued for (every live one: the active and a building one).
create or replace function ai_internal._live_versions(vid int) returns int[]
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce(array_agg(version order by version), '{}') from ai.vectorizer_versions where vectorizer_id = vid
$$;
grant execute on function ai_internal._live_versions(integer) to public;

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
grant execute on function ai_internal._enqueue(integer, jsonb[]) to public;

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
grant execute on function ai_internal._enqueue_all(integer, integer) to public;

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
grant execute on function ai_internal._forget(integer, jsonb[]) to public;

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
grant execute on function ai_internal._forget_all(integer) to public;

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
