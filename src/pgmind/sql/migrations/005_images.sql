-- Providers and images.
-- ai.providers: the provider classes the model server has, written by every install from the
-- Python package (pgmind.models.providers), so create_model checks names against one list.
create table ai.providers (
    name        text primary key,
    default_url text,
    probe       boolean not null default true,   -- create_model asks an embedding model its dimension
    in_process  boolean not null default false,  -- its models run in the model server (no URL)
    description text not null default ''
);
grant select on ai.providers to public;
alter table ai.model_registry drop constraint if exists model_registry_provider_check;

-- Where ai.load_file may read: directories (file:///data/photos/), URL prefixes (https://host/path/)
-- and S3-compatible buckets (s3://bucket/prefix/).  Empty by default: administrators add entries.
create table ai.load_allow (
    prefix   text primary key,
    options  jsonb not null default '{}',   -- s3: endpoint_url, region (never a secret)
    auth     jsonb not null default '{}',   -- s3: how to find credentials: {"author_type": "token" | "env", ...}
    added_by name not null default current_user,
    added_at timestamptz not null default now()
);
-- S3 credentials given as values, apart from the list: only the install role reads them.
create table ai.load_secrets (
    prefix text primary key references ai.load_allow (prefix) on delete cascade on update cascade,
    secret jsonb not null
);
revoke all on ai.load_allow, ai.load_secrets from public;
