-- The checks of a model's definition before it is registered: transform functions, auth and its
-- secret, the provider's URL, and the model server's probe.  Dynamic SQL is built with
-- format('%I'/'%s' of regproc), never by concatenating input.

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
