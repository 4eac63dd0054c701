-- The model registry: resolving a model for a call, registering, altering, dropping, granting
-- and revoking models, and the registry as users see it (ai.models).

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
grant execute on function ai_internal._model_for_call(text, name) to public;

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
    e_state text;
    e_message text;
    e_hint text;
begin
    -- (everyone may call it, to be told this rather than PostgreSQL's bare "permission denied")
    perform ai_internal._require_admin('register models');
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
        if dims is not null and not (select p.in_process from ai.providers p where p.name = provider) then
            -- a remote model whose dimension is given does not need its call: it is registered even
            -- before its key or the network is in place (a definition that cannot work, 22xxx, is
            -- still refused; a dimension the call contradicts too)
            begin
                probe := ai_internal._probe_model(model_id, url, provider, type, name, a.clean, a.secret, options);
            exception when others then
                get stacked diagnostics e_state = returned_sqlstate, e_message = message_text,
                                        e_hint = pg_exception_hint;
                e_hint := nullif(e_hint, '');
                if e_state like '22%' then
                    raise exception using errcode = e_state, message = e_message,
                                          hint = coalesce(e_hint, 'fix the model''s definition');
                end if;
                raise notice 'model "%" was registered without a check: %', model_id, e_message
                    using hint = coalesce(e_hint || '; then check', 'check') || ' the model with `pgmind models test '
                                 || model_id || '`';
                probe := null;
            end;
        else
            probe := ai_internal._probe_model(model_id, url, provider, type, name, a.clean, a.secret, options);
        end if;
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
grant execute on function ai.create_model(text, text, text, text, text, jsonb, regproc, regproc, regproc, jsonb) to public;

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
grant execute on function ai.alter_model(text, text, jsonb, regproc, regproc, regproc, jsonb, text) to pgmind_admin;

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
grant execute on function ai.drop_model(text, boolean) to pgmind_admin;

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
            using errcode = '42704',
                  hint = format('create the role first (create role %I), or grant to public', role_name);
    end if;
    insert into ai.model_grants (model_id, grantee, granted_by)
    values (model_id, case when lower(role_name) = 'public' then 'public' else role_name end, ai_internal._session_role())
    on conflict do nothing;
    perform ai_internal._registry_changed(model_id);
end $$;
grant execute on function ai.grant_model(text, name) to pgmind_admin;

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
grant execute on function ai.revoke_model(text, name) to pgmind_admin;

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
