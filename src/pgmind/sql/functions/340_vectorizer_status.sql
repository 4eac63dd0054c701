-- What a vectorizer's owner may see of it (status, errors, workers); and, last of the vectorizer
-- files because it runs their functions, the upgrade of existing vectorizers' owner functions.

-- Does planning a query on this relation run code of its owner's?  PostgreSQL's planner reads every
-- index's expressions and predicate and every extended statistics object's expressions of the
-- relation (and of its partitions and inheritance children, which a query on it reads too) and folds
-- their constant parts, so an immutable function of the owner's in an index or a statistics object
-- runs in whatever session plans a query there, as its current user — another role's, the gateway's
-- or the service role's (a review found it: issue 35's class).  An index's operator class of the
-- owner's runs in index scans the same way; so do the CHECK constraints of the children and
-- partitions it plans (constraint exclusion folds them), and a partition key's expressions and
-- operator classes (partition pruning).  So: no index, statistics object or constraint that depends
-- on a function, operator, operator class or type of a role's own (pgvector's are an extension's),
-- and no table of the tree that depends on a function, operator or operator class of one.
-- (Checked before the read, in the same transaction; a CREATE INDEX or CREATE STATISTICS committed
-- between the check and the plan is a window of microseconds that a lock the reader may take
-- cannot close: ACCESS SHARE does not conflict with them.)
-- (PL/pgSQL, each catalog read by its index, one object at a time: it runs on every search, and as
-- one SQL statement it was planned on every call and scanned pg_depend whole — 20 ms a search in a
-- fresh cluster whose catalogs have no statistics yet.)
create or replace function ai_internal._planner_safe(rel regclass) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    rels oid[] := array[rel::oid];
    r oid;
    obj record;
begin
    if (select c.relhassubclass from pg_class c where c.oid = rel) then
        with recursive tree(oid) as (
            select rel::oid
            union
            select i.inhrelid from pg_inherits i join tree t on i.inhparent = t.oid)
        select array_agg(t.oid) into rels from tree t;
    end if;
    -- (one relation at a time: with an array parameter the cached generic plans scanned pg_depend
    -- whole, 0.4 ms a call on the demo's catalog; with a scalar they read its index)
    foreach r in array rels loop
        for obj in select 'pg_class'::regclass::oid as classid, x.indexrelid as objid
                   from pg_index x where x.indrelid = r
                   union all
                   select 'pg_statistic_ext'::regclass::oid, s.oid from pg_statistic_ext s where s.stxrelid = r
                   union all
                   select 'pg_constraint'::regclass::oid, k.oid from pg_constraint k where k.conrelid = r loop
            if exists (select 1 from pg_depend d
                       where d.classid = obj.classid and d.objid = obj.objid
                         -- (an index depends on its table's columns and on the constraint it implements: not code)
                         and d.refobjid >= 16384 and d.refclassid not in ('pg_class'::regclass, 'pg_constraint'::regclass)
                         and not exists (select 1 from pg_depend x join pg_extension e on e.oid = x.refobjid
                                         where x.classid = d.refclassid and x.objid = d.refobjid and x.deptype = 'e'
                                           and e.extname = 'vector')) then
                return false;
            end if;
        end loop;
        -- (a table depends on its schema and its columns' types too: only code counts here)
        if exists (
            select 1 from pg_depend d
            where d.classid = 'pg_class'::regclass and d.objid = r and d.refobjid >= 16384
              and d.refclassid in ('pg_proc'::regclass, 'pg_operator'::regclass, 'pg_opclass'::regclass,
                                   'pg_opfamily'::regclass)
              and not exists (select 1 from pg_depend x join pg_extension e on e.oid = x.refobjid
                              where x.classid = d.refclassid and x.objid = d.refobjid and x.deptype = 'e'
                                and e.extname = 'vector')) then
            return false;
        end if;
    end loop;
    return true;
end $$;
grant execute on function ai_internal._planner_safe(regclass) to public;

-- Is a chunk table still the plain table pgmind made, safe to read in another role's session?  Its
-- owner could have put code there that a read would run: a view, rules, row security, or a column
-- changed to a type of its own (whose casts and operators are the owner's functions), a trigger, an
-- index or statistics object with a function of its own (_planner_safe), or a child table.
-- So: an ordinary table, no rules, row security, triggers or children, every column of a built-in
-- type or pgvector's, and safe to plan.
-- (PL/pgSQL, so its plans are kept for the session: every search runs it)
create or replace function ai_internal._store_is_plain(rel regclass) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return exists (select 1 from pg_class c where c.oid = rel and c.relkind = 'r' and not c.relrowsecurity
                   and not c.relhasrules and not c.relhassubclass
                   and not exists (select 1 from pg_trigger g where g.tgrelid = c.oid and not g.tgisinternal))
       and ai_internal._planner_safe(rel)
       and not exists (select 1 from pg_attribute a
                       where a.attrelid = rel and a.attnum > 0 and not a.attisdropped and a.atttypid >= 16384
                         and not exists (select 1 from pg_depend d join pg_extension e on e.oid = d.refobjid
                                         where d.classid = 'pg_type'::regclass and d.objid = a.atttypid
                                           and d.deptype = 'e' and e.extname = 'vector'));
end $$;
grant execute on function ai_internal._store_is_plain(regclass) to public;

-- Rows embedded so far in a version (each embedded row has a chunk 0), with the caller's rights:
-- null where the caller cannot read the chunks, or where the table is not the plain table pgmind
-- made (a view or row security there would run its owner's code in the caller's session).
create or replace function ai_internal._vectorizer_done(p_schema name, p_store name) returns bigint
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    rel oid;
    n bigint;
begin
    -- (to_regclass in a schema the caller may not use raises 42501: one role's chunks in a schema of
    -- its own must not make the whole view fail for the others)
    if not has_schema_privilege(p_schema, 'usage') then
        return null;
    end if;
    rel := to_regclass(format('%I.%I', p_schema, p_store));
    if rel is null or not has_table_privilege(rel, 'select') or not ai_internal._store_is_plain(rel) then
        return null;
    end if;
    execute format('select count(*) from only %I.%I where chunk_seq operator(pg_catalog.=) 0', p_schema, p_store)
        into n;
    return n;
end $$;
grant execute on function ai_internal._vectorizer_done(name, name) to public;

create or replace view ai.vectorizer_status as
select v.name, v.source::text as source, format('%I.%I', v.dest_schema, v.dest_view) as destination,
       ver.version, ver.status, ver.model, ver.chunking, ver.index_spec, ver.dimensions,
       coalesce(q.pending, 0) as pending, coalesce(q.leased, 0) as leased,
       ai_internal._vectorizer_done(v.dest_schema, ver.store_table) as done,
       coalesce(e.errors, 0) as errors,
       q.oldest_pending as lag,
       coalesce(p.rows_last_minute, 0) / 60.0 as rows_per_second,
       coalesce(q.last_error, e.last_error) as last_error,
       -- (issue 39: paused, issue 38: the time the queue will take at the last minute's rate; null
       -- when nothing was written in the last minute, zero when the queue is empty)
       v.paused_at is not null as paused,
       case when coalesce(q.pending, 0) + coalesce(q.leased, 0) = 0 then interval '0'
            when coalesce(p.rows_last_minute, 0) > 0
            then make_interval(secs => round((q.pending + q.leased) / (p.rows_last_minute / 60.0))::float8)
       end as eta,
       -- (issue 38: "no worker is running" is a state, not silence) a worker is alive while its
       -- heartbeat is younger than a lease (120 s): one silent longer has lost its leases
       w.alive as workers,
       case when v.paused_at is not null then 'paused'
            when coalesce(q.pending, 0) + coalesce(q.leased, 0) = 0 then 'done'
            when coalesce(q.leased, 0) > 0 then 'working'
            when w.alive = 0 then 'no worker running'
            else 'queued' end as state
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
cross join lateral (
    select count(*)::int as alive from ai.vectorizer_workers w where w.heartbeat_at > now() - interval '120 seconds') w
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
       rows_done, chunks_done, errors, case when ai_internal._is_admin(current_user) then last_error end as last_error,
       -- (a worker that exited cleanly leaves the list; one killed stays, silent, until it is not alive)
       heartbeat_at > now() - interval '120 seconds' as alive
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
