-- The outbound allow-list: where the model server may send requests.

-- Where the model server may send requests (see src/pgmind/models/outbound.py for the rules):
-- administrators manage the list; the server re-reads it on every change.
create or replace function ai.allow_outbound(pattern text) returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._require_admin('change where the model server may connect');
    pattern := lower(btrim(pattern));
    -- (the same forms src/pgmind/models/outbound.py parses: a name or *.name with an optional port,
    -- an IPv4 address or range with an optional port, an IPv6 address or range, [v6]:port)
    if pattern is null or length(pattern) > 253
       or pattern !~ '^((\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*(:[0-9]{1,5})?|[0-9.]+(/[0-9]{1,2})?(:[0-9]{1,5})?|[0-9a-f:.]*:[0-9a-f:.]*(/[0-9]{1,3})?|\[[0-9a-f:.]+\](:[0-9]{1,5})?)$' then
        raise exception 'invalid outbound pattern "%"', pattern
            using errcode = '22023', hint = 'a host (api.openai.com), *.domain, an IP address or CIDR range, optionally :port';
    end if;
    insert into ai.outbound_allow (pattern, added_by) values (pattern, ai_internal._session_role()) on conflict do nothing;
    perform pg_notify('pgmind_registry', '');
    return pattern;
end $$;
grant execute on function ai.allow_outbound(text) to pgmind_admin;

create or replace function ai.disallow_outbound(pattern text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    n int;
begin
    perform ai_internal._require_admin('change where the model server may connect');
    delete from ai.outbound_allow o where o.pattern = lower(btrim(disallow_outbound.pattern));
    get diagnostics n = row_count;
    perform pg_notify('pgmind_registry', '');
    return n > 0;
end $$;
grant execute on function ai.disallow_outbound(text) to pgmind_admin;

create or replace view ai.outbound_allow_list as
select pattern, added_by, added_at from ai.outbound_allow where ai_internal._is_admin(current_user);
grant select on ai.outbound_allow_list to public;
