-- Where ai.load_file may read (administrators): a directory, an http(s) URL prefix, or an S3 bucket
-- prefix.  The model server resolves paths and checks every file and redirect against this list
-- (src/pgmind/images/loader.py); here a prefix is only checked for its form.
-- A directory is written as a path or a file:// URL; the list keeps the URL.
create or replace function ai_internal._load_prefix(prefix text) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select case when btrim(prefix) like '/%' then 'file://' || btrim(prefix) else btrim(prefix) end
$$;

create or replace function ai.allow_load_from(prefix text, options jsonb default '{}', credentials jsonb default null)
returns text language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    auth jsonb := '{}';
begin
    perform ai_internal._require_admin('change where ai.load_file may read');
    prefix := ai_internal._load_prefix(prefix);
    if prefix is null or length(prefix) > 2000 or prefix !~ '^(file:///.|https?://[^/@\s]+|s3://[a-z0-9][a-z0-9.-]{1,62})'
       or prefix ~ '\s' or prefix ~ '/\.\.?(/|$)' or prefix ~ '^[a-z0-9]+://[^/]*@' then
        raise exception 'invalid load prefix "%"', prefix
            using errcode = '22023',
                  hint = 'a directory (/data/photos or file:///data/photos), https://host/path/ or s3://bucket/prefix/';
    end if;
    if right(prefix, 1) <> '/' then
        prefix := prefix || '/';    -- a directory or a path prefix, never a name prefix (/data/p → /data/private)
    end if;
    if options is null or jsonb_typeof(options) <> 'object'
       or exists (select 1 from jsonb_object_keys(options) k
                  where k not in ('endpoint_url', 'region', 'addressing_style', 'anonymous'))
       -- (a public bucket is read unsigned only when said so: never with the server's own identity)
       or (options ? 'anonymous' and (jsonb_typeof(options->'anonymous') <> 'boolean' or prefix not like 's3://%')) then
        raise exception 'options must be a JSON object with endpoint_url, region, addressing_style or anonymous (true or false, for s3://)'
            using errcode = '22023', hint = 'e.g. ''{"endpoint_url": "https://oss-cn-hangzhou.aliyuncs.com"}''';
    end if;
    if credentials is not null then
        if prefix not like 's3://%' then
            raise exception 'credentials are for s3:// prefixes' using errcode = '22023';
        end if;
        if jsonb_typeof(credentials) <> 'object' then
            raise exception 'credentials must be a JSON object' using errcode = '22023';
        end if;
        if credentials ? 'access_key_env' or credentials ? 'secret_key_env' then
            auth := jsonb_build_object('author_type', 'env', 'access_key_env', credentials->>'access_key_env',
                                       'secret_key_env', credentials->>'secret_key_env');
        elsif credentials ? 'access_key_id' and credentials ? 'secret_access_key' then
            auth := '{"author_type": "token"}';
        else
            raise exception 'credentials need access_key_id and secret_access_key, or access_key_env and secret_key_env'
                using errcode = '22023', hint = 'environment variables must be lent by PGMIND_SECRET_ENV';
        end if;
    end if;
    insert into ai.load_allow (prefix, options, auth, added_by) values (prefix, options, auth, ai_internal._session_role())
    on conflict on constraint load_allow_pkey do update set options = excluded.options, auth = excluded.auth,
                                                            added_by = excluded.added_by,
                                       added_at = now();
    delete from ai.load_secrets s where s.prefix = allow_load_from.prefix;
    if auth->>'author_type' = 'token' then
        insert into ai.load_secrets (prefix, secret)
        values (prefix, jsonb_build_object('access_key_id', credentials->>'access_key_id',
                                           'secret_access_key', credentials->>'secret_access_key'));
    end if;
    return prefix;
end $$;
grant execute on function ai.allow_load_from(text, jsonb, jsonb) to pgmind_admin;

create or replace function ai.disallow_load_from(prefix text) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    n int;
begin
    perform ai_internal._require_admin('change where ai.load_file may read');
    prefix := ai_internal._load_prefix(prefix);
    delete from ai.load_allow a where a.prefix in (disallow_load_from.prefix, disallow_load_from.prefix || '/');
    get diagnostics n = row_count;
    return n > 0;
end $$;
grant execute on function ai.disallow_load_from(text) to pgmind_admin;

-- Everyone may see where files can be loaded from (not the credentials).
create or replace view ai.load_allow_list as
select prefix, options, auth->>'author_type' as credentials, added_by, added_at from ai.load_allow;
grant select on ai.load_allow_list to public;
