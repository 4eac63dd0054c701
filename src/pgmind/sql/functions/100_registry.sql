-- Model registry functions (PL/pgSQL; re-applied on every install).
-- Dynamic SQL is built with format('%I'/'%s' of regproc), never by concatenating input.

-- Is this role an administrator of pgmind (superuser, or member of pgmind_admin)?
create or replace function ai_internal._is_admin(role_name name) returns boolean
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select coalesce((select rolsuper from pg_roles where rolname = role_name), false)
        or (exists (select 1 from pg_roles where rolname = 'pgmind_admin')
            and pg_has_role(role_name, 'pgmind_admin', 'MEMBER'))
$$;

-- May this role call this model?  The owner, administrators, and grantees (directly, through
-- a role they belong to, or through 'public').  For the services and the definer functions; not
-- callable by PUBLIC (ai_internal._can_use is the public face).
create or replace function ai_internal._may_use(role_name name, p_model_id text) returns boolean
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select ai_internal._is_admin(role_name)
        or exists (select 1 from ai.model_registry r
                   where r.model_id = p_model_id and pg_has_role(role_name, r.owner, 'MEMBER'))
        or exists (select 1 from ai.model_grants g
                   where g.model_id = p_model_id
                     and (g.grantee = 'public'
                          or (exists (select 1 from pg_roles where rolname = g.grantee)
                              and pg_has_role(role_name, g.grantee, 'USAGE'))))
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

-- Each role's credential for the model server (see migrations/007): read with the caller's rights,
-- so row-level security hands each role its own and nobody else's.
create or replace function ai_internal._role_token() returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select t.token from ai_internal.role_tokens t
    where t.role_oid = (select r.oid from pg_catalog.pg_roles r where r.rolname = current_user)
$$;

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

-- Resolve a model for a call from SQL: unknown model → 42704, no grant → 42501.
create or replace function ai_internal._model_for_call(p_model_id text, caller name)
returns table (model_id text, provider text, model_type text, model_name text, url text,
               header_fn regproc, in_fn regproc, out_fn regproc, options jsonb, dimensions int)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._check_caller(caller);
    if not exists (select 1 from ai.model_registry r where r.model_id = p_model_id) then
        raise exception 'model "%" is not registered', p_model_id
            using errcode = '42704',
                  hint = 'list the registered models with `pgmind models list` or select * from ai.models';
    end if;
    if not ai_internal._may_use(caller, p_model_id) then
        raise exception 'permission denied for model "%"', p_model_id
            using errcode = '42501',
                  hint = format('the model''s owner or an administrator can run: select ai.grant_model(%L, %L)',
                                p_model_id, caller);
    end if;
    return query select r.model_id, r.provider, r.model_type, r.model_name, r.url, r.header_fn, r.in_fn,
                        r.out_fn, r.options, r.dimensions
                 from ai.model_registry r where r.model_id = p_model_id;
end $$;

-- Check that a transform function exists with the expected shape.
create or replace function ai_internal._check_transform(fn regproc, role_text text, want_result text[]) returns void
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    p pg_proc;
begin
    if fn is null then return; end if;
    select * into p from pg_proc where oid = fn;
    if not found then
        raise exception '% function % does not exist', role_text, fn
            using errcode = '42883', hint = format('create the %s function first, or pass null', role_text);
    end if;
    if p.pronargs <> 2 or p.proargtypes[0] <> 'text'::regtype
       or p.proargtypes[1] not in ('text'::regtype, 'jsonb'::regtype, 'json'::regtype) then
        raise exception '% function % has the wrong arguments (%)', role_text, fn,
                        pg_get_function_identity_arguments(fn)
            using errcode = '42883',
                  hint = format('a %s function takes (model_id text, input text|jsonb)', role_text);
    end if;
    if want_result is not null and not (p.prorettype::regtype::text = any (want_result)) then
        raise exception '% function % returns %, expected one of %', role_text, fn,
                        p.prorettype::regtype, array_to_string(want_result, ', ')
            using errcode = '42P13', hint = format('make %s return jsonb', fn);
    end if;
end $$;

-- Validate the auth object and split off its secret.  Returns (auth without secret, secret).
create or replace function ai_internal._split_auth(auth jsonb, out clean jsonb, out secret text)
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    kind text;
begin
    auth := coalesce(auth, '{}'::jsonb);
    if jsonb_typeof(auth) <> 'object' then
        raise exception 'auth must be a JSON object, got %', jsonb_typeof(auth)
            using errcode = '22023', hint = 'pass {"author_type":"token","token":"..."} or {"author_type":"env","env":"VAR"}';
    end if;
    kind := coalesce(auth->>'author_type', case when auth ? 'token' then 'token'
                                                 when auth ? 'env' then 'env' else 'none' end);
    if kind = 'token' then
        secret := auth->>'token';
        if secret is null or btrim(secret) = '' then
            raise exception 'auth has author_type "token" but no token'
                using errcode = '22023', hint = 'pass {"author_type":"token","token":"<the secret>"}';
        end if;
        clean := jsonb_build_object('author_type', 'token');
    elsif kind = 'env' then
        if coalesce(auth->>'env', '') !~ '^[A-Za-z_][A-Za-z0-9_]*$' then
            raise exception 'auth has author_type "env" but no valid environment variable name'
                using errcode = '22023', hint = 'pass {"author_type":"env","env":"OPENAI_API_KEY"}';
        end if;
        clean := jsonb_build_object('author_type', 'env', 'env', auth->>'env');
    elsif kind = 'none' then
        clean := jsonb_build_object('author_type', 'none');
    else
        raise exception 'unknown author_type "%"', kind
            using errcode = '22023', hint = 'author_type is one of token, env, none';
    end if;
    -- keep extra non-secret settings (e.g. "header": "X-Api-Key" for providers that use another header)
    clean := clean || (auth - 'token' - 'author_type' - 'env');
end $$;

create or replace function ai_internal._default_url(provider text) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
    select p.default_url from ai.providers p where p.name = provider
$$;

create or replace function ai_internal._validate_model(url text, provider text, model_type text, model_name text,
                                              header_fn regproc, in_fn regproc, out_fn regproc, options jsonb)
returns void language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
    if provider is null or not exists (select 1 from ai.providers p where p.name = provider) then
        raise exception 'unknown provider "%"', provider
            using errcode = '22023', hint = 'provider is one of ' || (select string_agg(p.name, ', ' order by p.name)
                                                                       from ai.providers p);
    end if;
    if model_type is null or model_type not in ('embedding', 'chat', 'image_embedding', 'rerank') then
        raise exception 'unknown model type "%"', model_type
            using errcode = '22023', hint = 'type is one of embedding, chat, image_embedding, rerank';
    end if;
    if model_name is null or btrim(model_name) = '' then
        raise exception 'model name is empty'
            using errcode = '22023', hint = 'pass the provider''s own name for the model, e.g. text-embedding-v3';
    end if;
    if url is null and ai_internal._default_url(provider) is null
       and not (select p.in_process from ai.providers p where p.name = provider) then
        raise exception 'a model of provider "%" needs a URL', provider
            using errcode = '22023', hint = 'pass the HTTP endpoint, e.g. http://127.0.0.1:51000/post';
    end if;
    if url is not null and url !~ '^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]+)?(/[^\s]*)?$' then
        raise exception 'invalid model URL "%"', url
            using errcode = '22023', hint = 'use an absolute http:// or https:// URL';
    end if;
    if url is not null and substring(url from '^https?://(?:\[[^\]]*\]|[^/:\[]+):([0-9]+)')::numeric
                           not between 1 and 65535 then
        raise exception 'invalid port in model URL "%"', url
            using errcode = '22023', hint = 'a port is 1..65535, e.g. http://127.0.0.1:8000/v1';
    end if;
    if options is not null and jsonb_typeof(options) <> 'object' then
        raise exception 'options must be a JSON object'
            using errcode = '22023', hint = 'pass options like {"dimensions": 1024, "timeout": 30}';
    end if;
    if options ? 'dimensions' and not ai_internal._json_count(options->'dimensions', 1, 16000) then
        raise exception 'options.dimensions must be an integer from 1 to 16000, got %', options->'dimensions'
            using errcode = '22023', hint = 'e.g. options => ''{"dimensions": 1024}''';
    end if;
    if options ? 'timeout' and (jsonb_typeof(options->'timeout') <> 'number'
                                or (options->>'timeout')::numeric <= 0 or (options->>'timeout')::numeric > 86400) then
        raise exception 'options.timeout must be a number of seconds from 0 to 86400, got %', options->'timeout'
            using errcode = '22023', hint = 'e.g. options => ''{"timeout": 60}''';
    end if;
    perform ai_internal._check_transform(header_fn, 'header', array['json', 'jsonb']);
    perform ai_internal._check_transform(in_fn, 'input', array['json', 'jsonb']);
    perform ai_internal._check_transform(out_fn, 'output', null);
end $$;

-- Ask the model server what the model is (for embeddings: its dimension).  The model is not
-- committed yet, so its whole definition travels in the request.  Returns null when the model
-- server cannot be reached (registration goes on with a notice).  It runs inside ai.create_model
-- (administrators only), as the install role, whose credential the server takes for an administrator's.
create or replace function ai_internal._probe_model(p_model_id text, url text, provider text, model_type text,
                                           model_name text, auth jsonb, secret text, options jsonb)
returns jsonb language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    answer jsonb;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
begin
    if not exists (select 1 from pg_proc where proname = '_server_request'
                   and pronamespace = 'ai_internal'::regnamespace) then
        return null;  -- no plpython3u on this server: nothing can call models from SQL anyway
    end if;
    begin
        answer := ai_internal._server_request('/pgmind/v1/probe',
            jsonb_build_object('model_id', p_model_id, 'url', url, 'provider', provider,
                               'model_type', model_type, 'model_name', model_name, 'auth', auth,
                               'secret', secret, 'options', options)::text,
            current_user, 60)::jsonb;
    exception when sqlstate '08001' then
        raise notice 'model "%" was registered without a check: the model server is not running', p_model_id
            using hint = 'start it with `pgmind serve`, then check the model with `pgmind models test`';
        return null;
    when others then     -- (PL/Python's "plpy.Error: " prefixes off, SQLSTATE and hint kept)
        get stacked diagnostics e_state = returned_sqlstate, e_message = message_text,
                                e_detail = pg_exception_detail, e_hint = pg_exception_hint;
        perform ai_internal._reraise(e_state, e_message, e_detail, e_hint);
    end;
    return answer;
end $$;

create or replace function ai.create_model(
    model_id text, url text, provider text, type text, name text,
    auth jsonb default '{}', header_fn regproc default null, in_fn regproc default null,
    out_fn regproc default null, options jsonb default '{}')
returns text language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    a record;
    t ai.model_registry;
    probe jsonb;
    dims int;
begin
    if model_id is null or model_id !~ '^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$' then
        raise exception 'invalid model id "%"', model_id
            using errcode = '22023', hint = 'a model id is 1-200 letters, digits and _ . : / @ + -, e.g. embedding/my_clip';
    end if;
    if exists (select 1 from ai.model_registry r where r.model_id = create_model.model_id) then
        raise exception 'model "%" already exists', model_id
            using errcode = '42710', hint = 'change it with ai.alter_model, or remove it with ai.drop_model';
    end if;
    options := coalesce(options, '{}'::jsonb);
    -- an alias: a local model under another name, e.g. text-embedding-3-small for e5-small, so a
    -- client's default model name works unchanged.  It loads the same model (the same instance).
    if provider = 'pgmind' and not (options ? 'backend' or options ? 'path') then
        select * into t from ai.model_registry r where r.model_id = create_model.name and r.provider = 'pgmind';
        if found then
            if t.model_type <> type then
                raise exception 'model "%" is a % model, not %', t.model_id, t.model_type, type
                    using errcode = '22023', hint = format('register the alias as type %L', t.model_type);
            end if;
            name := t.model_name;
            options := t.options || options || jsonb_build_object('alias_of', t.model_id);
            dims := t.dimensions;
        end if;
    end if;
    url := coalesce(url, ai_internal._default_url(provider));
    header_fn := nullif(header_fn, 0::oid::regproc);   -- '-' is how regproc writes "no function"
    in_fn := nullif(in_fn, 0::oid::regproc);
    out_fn := nullif(out_fn, 0::oid::regproc);
    perform ai_internal._validate_model(url, provider, type, name, header_fn, in_fn, out_fn, options);
    select * into a from ai_internal._split_auth(auth);
    dims := coalesce(dims, (options->>'dimensions')::numeric::int);

    -- (a local chat model is checked too: its GGUF must be there)
    if (type in ('embedding', 'image_embedding')
        or (type = 'chat' and (select p.in_process from ai.providers p where p.name = provider)))
       and not options ? 'alias_of' and (select p.probe from ai.providers p where p.name = provider) then
        probe := ai_internal._probe_model(model_id, url, provider, type, name, a.clean, a.secret, options);
        if probe ? 'dimensions' then
            if dims is not null and dims <> (probe->>'dimensions')::int then
                raise exception 'model "%" returns % dimensions, but options say %', model_id,
                                probe->>'dimensions', dims
                    using errcode = '22000', hint = 'fix options.dimensions, or leave it out to use what the model returns';
            end if;
            dims := (probe->>'dimensions')::int;
        end if;
    end if;

    insert into ai.model_registry (model_id, url, provider, model_type, model_name, auth, header_fn,
                                   in_fn, out_fn, options, dimensions, owner)
    values (model_id, url, provider, type, name, a.clean, header_fn, in_fn, out_fn,
            options, dims, ai_internal._session_role());
    if a.secret is not null then
        insert into ai.model_secrets (model_id, secret) values (model_id, a.secret);
    end if;
    perform ai_internal._registry_changed(model_id);
    return model_id;
end $$;

-- Tell the model server the registry changed (it drops its cache); delivered at commit.
create or replace function ai_internal._registry_changed(p_model_id text) returns void
language sql volatile as $$ select pg_notify('pgmind_registry', coalesce(p_model_id, '')) $$;

create or replace function ai_internal._check_owner(p_model_id text) returns void
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
    o name;
begin
    select owner into o from ai.model_registry where model_id = p_model_id;
    if not found then
        raise exception 'model "%" is not registered', p_model_id
            using errcode = '42704', hint = 'list the registered models with select * from ai.models';
    end if;
    if not (ai_internal._is_admin(ai_internal._session_role()) or pg_has_role(ai_internal._session_role(), o, 'MEMBER')) then
        raise exception 'must be the owner of model "%" (%)', p_model_id, o
            using errcode = '42501', hint = 'ask the owner or a pgmind administrator';
    end if;
end $$;

create or replace function ai.alter_model(
    model_id text, url text default null, auth jsonb default null, header_fn regproc default null,
    in_fn regproc default null, out_fn regproc default null, options jsonb default null,
    name text default null)
returns text language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    r ai.model_registry;
    a record;
begin
    perform ai_internal._check_owner(model_id);
    select * into r from ai.model_registry m where m.model_id = alter_model.model_id for update;
    r.url := coalesce(url, r.url);
    r.header_fn := coalesce(header_fn, r.header_fn);
    r.in_fn := coalesce(in_fn, r.in_fn);
    r.out_fn := coalesce(out_fn, r.out_fn);
    r.options := coalesce(options, r.options);
    r.model_name := coalesce(name, r.model_name);
    perform ai_internal._validate_model(r.url, r.provider, r.model_type, r.model_name, r.header_fn, r.in_fn,
                               r.out_fn, r.options);
    if options ? 'dimensions' then
        r.dimensions := (options->>'dimensions')::numeric::int;
    end if;
    update ai.model_registry m
       set url = r.url, header_fn = r.header_fn, in_fn = r.in_fn, out_fn = r.out_fn, options = r.options,
           model_name = r.model_name, dimensions = r.dimensions, updated_at = now()
     where m.model_id = alter_model.model_id;
    if auth is not null then
        select * into a from ai_internal._split_auth(auth);
        update ai.model_registry m set auth = a.clean where m.model_id = alter_model.model_id;
        delete from ai.model_secrets s where s.model_id = alter_model.model_id;
        if a.secret is not null then
            insert into ai.model_secrets (model_id, secret) values (alter_model.model_id, a.secret);
        end if;
    end if;
    perform ai_internal._registry_changed(model_id);
    return model_id;
end $$;

create or replace function ai.drop_model(model_id text, if_exists boolean default false) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    users text;
begin
    if if_exists and not exists (select 1 from ai.model_registry m where m.model_id = drop_model.model_id) then
        return false;
    end if;
    perform ai_internal._check_owner(model_id);
    -- what is in use cannot vanish: a vectorizer's (any version's) model, or a knowledge base's RAG model
    select string_agg(distinct v.name, ', ') into users
    from ai.vectorizers v
    where exists (select 1 from ai.vectorizer_versions ver where ver.vectorizer_id = v.id and ver.model = drop_model.model_id)
       or exists (select 1 from jsonb_each_text(coalesce(v.config->'rag', '{}'::jsonb)) r
                  where r.key in ('model', 'translate_model', 'expand_model', 'topic_model', 'rerank')
                    and r.value = drop_model.model_id)
       or v.config->>'text_model' = drop_model.model_id;
    if users is not null then
        raise exception 'model "%" is in use by knowledge base(s) %', model_id, users
            using errcode = '2BP01',
                  hint = 'drop those vectorizers, or move them to another model with ai.alter_vectorizer '
                         '(and their RAG settings with ai.configure_rag), first';
    end if;
    delete from ai.model_registry m where m.model_id = drop_model.model_id;
    perform ai_internal._registry_changed(model_id);
    return true;
end $$;

create or replace function ai.grant_model(model_id text, role_name name) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    if role_name is null then
        raise exception 'the role to grant to is null' using errcode = '22004',
            hint = 'pass a role name, or ''public'' for everyone';
    end if;
    perform ai_internal._check_owner(model_id);
    if lower(role_name) <> 'public' and not exists (select 1 from pg_roles where rolname = role_name) then
        raise exception 'role "%" does not exist', role_name
            using errcode = '42704', hint = 'create the role first, or grant to public';
    end if;
    insert into ai.model_grants (model_id, grantee, granted_by)
    values (model_id, case when lower(role_name) = 'public' then 'public' else role_name end, ai_internal._session_role())
    on conflict do nothing;
    perform ai_internal._registry_changed(model_id);
end $$;

create or replace function ai.revoke_model(model_id text, role_name name) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    if role_name is null then
        raise exception 'the role to revoke from is null' using errcode = '22004',
            hint = 'pass a role name, or ''public'' for everyone';
    end if;
    perform ai_internal._check_owner(model_id);
    delete from ai.model_grants g
     where g.model_id = revoke_model.model_id
       and g.grantee = case when lower(role_name) = 'public' then 'public' else role_name end;
    perform ai_internal._registry_changed(model_id);
end $$;

-- The registry as users see it: no secret, ever, and only the models the role may use.
create or replace view ai.models as
select r.model_id, r.provider, r.model_type, r.model_name, r.url,
       case when s.model_id is not null then r.auth || '{"token": "********"}'::jsonb else r.auth end as auth,
       r.header_fn, r.in_fn, r.out_fn, r.options, r.dimensions, r.owner,
       coalesce((select array_agg(g.grantee order by g.grantee) from ai.model_grants g
                 where g.model_id = r.model_id), '{}') as granted_to,
       ai_internal._can_use(current_user, r.model_id) as usable,
       r.created_at, r.updated_at
from ai.model_registry r
left join ai.model_secrets s on s.model_id = r.model_id
-- a role sees the models it may use (administrators: all of them)
where ai_internal._can_use(current_user, r.model_id);
grant select on ai.models to public;

-- Administrators' functions are granted to pgmind_admin only; this says so clearly to anyone else
-- (and holds even where a grant was changed by hand).
create or replace function ai_internal._require_admin(what text) returns void
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    if not ai_internal._is_admin(ai_internal._session_role()) then
        raise exception 'only pgmind administrators %', what
            using errcode = '42501', hint = 'a superuser can run: grant pgmind_admin to ' || quote_ident(current_user);
    end if;
end $$;

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
    if role_name is null or not exists (select 1 from pg_roles where rolname = role_name) then
        raise exception 'role "%" does not exist', role_name
            using errcode = '42704', hint = format('create the role first: create role %I nologin', role_name);
    end if;
    if (select rolsuper from pg_roles where rolname = role_name) then
        raise exception 'an API key cannot carry a superuser''s rights'
            using errcode = '42501', hint = 'make a role with just the grants the key needs';
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
                               where k.role_oid = g.oid and k.revoked_at is null and not kr.rolsuper) loop
        execute format('revoke %I from pgmind_gateway', r.rolname);
    end loop;
    for r in select distinct kr.rolname from ai.api_keys k join pg_roles kr on kr.oid = k.role_oid
             where k.revoked_at is null and not kr.rolsuper and kr.rolname not in ('pgmind_gateway', 'pgmind_service')
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

create or replace view ai.api_key_list as
select id, key_prefix, role_name, label, created_by, created_at, revoked_at
from ai.api_keys where ai_internal._is_admin(current_user);
grant select on ai.api_key_list to public;

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

create or replace view ai.outbound_allow_list as
select pattern, added_by, added_at from ai.outbound_allow where ai_internal._is_admin(current_user);
grant select on ai.outbound_allow_list to public;
