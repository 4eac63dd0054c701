-- Helpers of the installer itself (re-applied on every install).

-- Replace a function whose result type changed (create or replace cannot): drops it only when
-- its result differs, so re-running install never drops a function that calls are using.
create or replace function ai._drop_if_result_differs(sig text, result text) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    if to_regprocedure(sig) is not null and pg_get_function_result(to_regprocedure(sig)) <> result then
        execute format('drop function %s cascade', to_regprocedure(sig));
    end if;
end $$;
