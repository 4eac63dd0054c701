-- Helpers of the installer itself (re-applied on every install).

-- Rights: a function is executable by no one but the install role (and the services: every
-- ai_internal function, src/pgmind/db/migrate.py) unless its file grants it, in the line right
-- after its definition (`grant execute on function ... to public;`, administrators' functions
-- `to pgmind_admin;`).  The installer applies the files from a clean slate (docs/security.md), and
-- tests/golden/rights.tsv shows who may execute what.

-- Internal functions live in ai_internal (created by the installer).  Releases before it kept them
-- in ai as ai._*: drop those (with the views and policies that use them, which the files below make
-- again).
do $$
declare
    f regprocedure;
begin
    for f in select p.oid::regprocedure from pg_proc p
             where p.pronamespace = 'ai'::regnamespace and p.proname like '\_%' loop
        execute format('drop function if exists %s cascade', f);
    end loop;
end $$;

-- Replace a function whose result type changed (create or replace cannot): drops it only when
-- its result differs, so re-running install never drops a function that calls are using.
create or replace function ai_internal._drop_if_result_differs(sig text, result text) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    if to_regprocedure(sig) is not null and pg_get_function_result(to_regprocedure(sig)) <> result then
        execute format('drop function %s cascade', to_regprocedure(sig));
    end if;
end $$;

-- The one rule for a count setting (dimensions, chunk sizes, RAG counts): a whole JSON number lo..hi
-- (lo >= 0), 64 or 64.0 alike as JSON Schema's "integer" and the worker's ChunkingConfig take it.
-- False for anything else (a string "3", 2.5, null, an array), so each caller raises its own
-- message with its own bounds.  jsonb keeps 64.0 as "64.0", so readers cast (x->>'k')::numeric::int.
-- Drops the two-argument form of releases before it.
drop function if exists ai_internal._json_count(jsonb, int);
create or replace function ai_internal._json_count(value jsonb, lo int, hi int) returns boolean
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select coalesce(jsonb_typeof(value) = 'number' and value::text::numeric between lo and hi
                    and value::text::numeric = trunc(value::text::numeric), false)
$$;
grant execute on function ai_internal._json_count(jsonb, integer, integer) to public;
