-- Who asks: administrators, the session's role, the role a function acts for, each role's token
-- for the model server (PL/pgSQL and SQL; re-applied on every install).

-- Is this role an administrator of pgmind (superuser, or member of pgmind_admin)?
create or replace function ai_internal._is_admin(role_name name) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return (select coalesce((select rolsuper from pg_roles where rolname = role_name), false)
            or (exists (select 1 from pg_roles where rolname = 'pgmind_admin')
                and pg_has_role(role_name, 'pgmind_admin', 'MEMBER')));
end
$$;
grant execute on function ai_internal._is_admin(name) to public;

-- Could a session acting as this role become a superuser, or do what only one should?  It is one,
-- or belongs to one (SET ROLE follows memberships, granted before or after a key was made); it has
-- CREATEROLE (on PostgreSQL 15 such a role can grant itself the roles below); it belongs to a role
-- that runs programs or reads or writes files as the server's operating system user; or it belongs
-- to one of pgmind's service roles.  The one rule for API keys, the gateway's memberships and every
-- service that acts as a user's role: such roles are refused.
create or replace function ai_internal._reaches_superuser(role_oid oid) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (select exists (select 1 from pg_roles s
                       where (s.rolsuper or s.rolcreaterole
                              or s.rolname in ('pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files')
                              or (s.rolname in ('pgmind_service', 'pgmind_gateway') and s.oid <> role_oid))
                         and pg_has_role(role_oid, s.oid, 'MEMBER')));
end
$$;
grant execute on function ai_internal._reaches_superuser(oid) to public;

-- May this session (the gateway's) act as that role: it holds the membership, the role cannot reach
-- a superuser, and neither can the gateway itself through any other role it belongs to — a keyed
-- role granted a superuser's membership after its key was made would otherwise be one SET ROLE away
-- for whatever code runs in the gateway's session, until the next ai_internal._sync_gateway.
-- Checked at use, inside the transaction that then runs SET ROLE.
create or replace function ai_internal._may_act_as(role_name name) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (select coalesce((select pg_has_role(current_user, r.oid, 'MEMBER')
                                and not ai_internal._reaches_superuser(r.oid)
                         from pg_roles r where r.rolname = role_name), false)
           and not ai_internal._reaches_superuser((select u.oid from pg_roles u where u.rolname = current_user)));
end
$$;
grant execute on function ai_internal._may_act_as(name) to public;

-- The gateway's way into a keyed role, for every transaction of its (HTTP search, the console): the
-- planner switches that would fold a table owner's CHECK constraints or partition keys in this
-- session off, the check above, then SET LOCAL ROLE — one call, so one round trip, and one place
-- that writes the sequence.  SECURITY INVOKER and without a SET clause on purpose: the settings must
-- outlive the call (to the end of the transaction), and SET ROLE is refused in a definer function;
-- every name is schema-qualified instead.  It lets a session do nothing it could not do itself.
create or replace function ai_internal._act_as(role_name name) returns void
language plpgsql volatile as $$
begin
    perform pg_catalog.set_config('constraint_exclusion', 'off', true);
    perform pg_catalog.set_config('enable_partition_pruning', 'off', true);
    if not ai_internal._may_act_as(role_name) then
        raise exception 'pgmind cannot act as role %', role_name
            using errcode = '42501',
                  hint = 'use an API key of a role that is neither a superuser nor a member of one '
                         '(ai.create_api_key); if yours is such a key, another key''s role has joined a '
                         'superuser: an administrator runs pgmind install to drop it';
    end if;
    perform pg_catalog.set_config('role', role_name, true);
end
$$;
grant execute on function ai_internal._act_as(name) to public;

-- May this role call this model?  The owner, administrators, and grantees (directly, through
-- a role they belong to, or through 'public').  For the services and the definer functions; not
-- callable by PUBLIC (ai_internal._can_use is the public face).
create or replace function ai_internal._may_use(role_name name, p_model_id text) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    return (select ai_internal._is_admin(role_name)
            or exists (select 1 from ai.model_registry r
                       where r.model_id = p_model_id and pg_has_role(role_name, r.owner, 'MEMBER'))
            or exists (select 1 from ai.model_grants g
                       where g.model_id = p_model_id
                         and (g.grantee = 'public'
                              or (exists (select 1 from pg_roles where rolname = g.grantee)
                                  and pg_has_role(role_name, g.grantee, 'USAGE')))));
end
$$;

-- The same, answered only for the session's own role (or by an administrator): who may use what
-- is not every role's business.  ai.models calls it for current_user.
create or replace function ai_internal._can_use(role_name name, p_model_id text) returns boolean
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    me name := coalesce(nullif(current_setting('role'), 'none'), session_user);
begin
    if role_name is distinct from me and not (me not in ('pgmind_service', 'pgmind_gateway') and ai_internal._is_admin(me)) then
        return false;
    end if;
    return ai_internal._may_use(role_name, p_model_id);
end $$;
grant execute on function ai_internal._can_use(name, text) to public;

-- The role the session acts as at its top level: the role it SET, else the one it logged in as.
-- Authorization decisions rest on this, never on session_user alone, and it refuses the services'
-- roles: code of a table's owner that runs in a worker's session (content expressions, triggers,
-- inside the owner's SECURITY DEFINER functions, where SET ROLE is refused) gets no one to act as.
-- (Inside a SECURITY DEFINER function current_user is its owner; the 'role' setting is still the
-- session's.)
create or replace function ai_internal._session_role() returns name
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    r name := coalesce(nullif(current_setting('role'), 'none'), session_user);
begin
    if r in ('pgmind_service', 'pgmind_gateway') then
        raise exception 'pgmind''s service role % acts for no one', r
            using errcode = '42501',
                  hint = 'pgmind functions that act for a role cannot be called from a content expression, '
                         'a trigger or a query the services run: call them in your own session';
    end if;
    return r;
end $$;
grant execute on function ai_internal._session_role() to public;

-- The caller a SQL function claims must be a role the session may act as: this stops a role from
-- borrowing another role's grants through the internal functions.
create or replace function ai_internal._check_caller(caller name) returns void
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    me name := ai_internal._session_role();
begin
    if caller is null or not pg_has_role(me, caller, 'MEMBER') then
        raise exception 'role % cannot act as role %', me, caller
            using errcode = '42501', hint = 'call the ai.* functions, not the internal ai._* ones';
    end if;
end $$;
grant execute on function ai_internal._check_caller(name) to public;

-- Each role's credential for the model server (see migrations/007): read with the caller's rights,
-- so row-level security hands each role its own and nobody else's.
create or replace function ai_internal._role_token() returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    return (select t.token from ai_internal.role_tokens t
        where t.role_oid = (select r.oid from pg_catalog.pg_roles r where r.rolname = current_user));
end
$$;
grant execute on function ai_internal._role_token() to public;

-- Makes the missing tokens, for every role at once (nobody learns anything: each can read only its
-- own), and forgets those of dropped roles.  Called by install and by a new role's first model call.
-- The model server checks a token by its mac (pgmind.server.deps), keyed by a secret only the
-- install role and the services read.
create or replace function ai_internal._issue_role_tokens() returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    n int;
    secret text := (select value from ai._settings where key = 'role_token_secret');
begin
    delete from ai_internal.role_tokens t where not exists (select 1 from pg_roles r where r.oid = t.role_oid);
    insert into ai_internal.role_tokens (role_oid, token)
    select r.oid, 'pgr-' || r.oid::text || '-'
                  || encode(sha256(convert_to(secret || ':' || r.oid::text || ':' || secret, 'UTF8')), 'hex')
    from pg_roles r
    where r.rolname !~ '^pg_' and not exists (select 1 from ai_internal.role_tokens t where t.role_oid = r.oid);
    get diagnostics n = row_count;
    return n;
end $$;
grant execute on function ai_internal._issue_role_tokens() to public;

-- Administrators' functions are granted to pgmind_admin only (ai.create_model to everyone, so that
-- a role that is not one learns this instead of a bare "permission denied"); this says so clearly
-- to anyone else, naming the session's role (current_user is this function's owner), and holds
-- even where a grant was changed by hand.
create or replace function ai_internal._require_admin(what text) returns void
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    me name := ai_internal._session_role();
begin
    if not ai_internal._is_admin(me) then
        raise exception 'only pgmind administrators % (role % is not one)', what, me
            using errcode = '42501', hint = 'a superuser can make it one: grant pgmind_admin to ' || quote_ident(me);
    end if;
end $$;
