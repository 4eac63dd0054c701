-- API keys, and the gateway role's memberships that follow them.

-- API keys for HTTP users (the openai and dashscope SDKs, LangChain, ...): each key carries one
-- database role's grants, so `ai.grant_model` applies to SDK users too.  The model server's own
-- token is the database's credential, not a user's: hand out API keys instead.  Only the key's
-- sha256 is stored; the key is returned once.
create or replace function ai.create_api_key(role_name name, label text default null) returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    key text;
begin
    perform ai_internal._require_admin('make API keys');
    if role_name is null then
        raise exception 'the role of an API key is null' using errcode = '22004',
            hint = 'name the database role whose grants the key carries, e.g. select ai.create_api_key(''analyst'')';
    end if;
    if not exists (select 1 from pg_roles where rolname = role_name) then
        raise exception 'role "%" does not exist', role_name
            using errcode = '42704', hint = format('create the role first: create role %I nologin', role_name);
    end if;
    if ai_internal._reaches_superuser((select oid from pg_roles where rolname = role_name)) then
        raise exception 'an API key cannot carry a superuser''s rights (role "%" is a superuser or a member of one)',
                role_name
            using errcode = '42501', hint = 'make a role with just the grants the key needs, a member of no superuser';
    end if;
    key := 'pgmk-' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    insert into ai.api_keys (key_sha256, key_prefix, role_name, role_oid, label, created_by)
    values (encode(sha256(convert_to(key, 'UTF8')), 'hex'), left(key, 12), role_name,
            (select oid from pg_roles where rolname = role_name), label, ai_internal._session_role());
    perform ai_internal._issue_role_tokens();     -- (HTTP search runs read-only: the role's token must exist)
    perform ai_internal._sync_gateway();
    perform pg_notify('pgmind_registry', '');
    return key;
end $$;
grant execute on function ai.create_api_key(name, text) to pgmind_admin;

-- The model server searches as an API key's role (SET ROLE, in a read-only transaction): its
-- gateway role is a member of exactly the roles that hold a live key, never of a superuser, and
-- has no rights of its own (NOINHERIT).  Re-run whenever keys change, and by install.
create or replace function ai_internal._sync_gateway() returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    r record;
begin
    if not exists (select 1 from pg_roles where rolname = 'pgmind_gateway') then
        return;
    end if;
    for r in select g.rolname from pg_auth_members m join pg_roles g on g.oid = m.roleid
             where m.member = 'pgmind_gateway'::regrole
               and not exists (select 1 from ai.api_keys k join pg_roles kr on kr.oid = k.role_oid
                               where k.role_oid = g.oid and k.revoked_at is null
                                 and not ai_internal._reaches_superuser(kr.oid)) loop
        execute format('revoke %I from pgmind_gateway', r.rolname);
    end loop;
    for r in select distinct kr.rolname from ai.api_keys k join pg_roles kr on kr.oid = k.role_oid
             where k.revoked_at is null and not ai_internal._reaches_superuser(kr.oid) and kr.rolname not in ('pgmind_gateway', 'pgmind_service')
               and not pg_has_role('pgmind_gateway', kr.oid, 'MEMBER') loop
        execute format('grant %I to pgmind_gateway', r.rolname);
    end loop;
exception when insufficient_privilege then
    raise warning 'pgmind cannot change the gateway role''s memberships: HTTP search as API keys'' roles may fail'
        using hint = 'run `pgmind install` as a superuser';
end $$;

create or replace function ai.revoke_api_key(key_prefix text) returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    n int;
begin
    perform ai_internal._require_admin('revoke API keys');
    update ai.api_keys k set revoked_at = now()
    where k.key_prefix = revoke_api_key.key_prefix and k.revoked_at is null;
    get diagnostics n = row_count;
    if n = 0 then
        raise exception 'no active API key starts with "%"', key_prefix
            using errcode = '42704', hint = 'list them with select * from ai.api_key_list';
    end if;
    perform ai_internal._sync_gateway();
    perform pg_notify('pgmind_registry', '');
    return n;
end $$;
grant execute on function ai.revoke_api_key(text) to pgmind_admin;

create or replace view ai.api_key_list as
select id, key_prefix, role_name, label, created_by, created_at, revoked_at
from ai.api_keys where ai_internal._is_admin(current_user);
grant select on ai.api_key_list to public;
