-- The model registry, its secrets and grants, and the private settings shared with the model server.
-- Released migrations are never edited: add a new numbered file instead.

create table ai.model_registry (
    model_id    text primary key check (model_id ~ '^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$'),
    url         text,
    provider    text not null check (provider in ('pgmind', 'openai', 'dashscope', 'other')),
    model_type  text not null check (model_type in ('embedding', 'chat', 'image_embedding', 'rerank')),
    model_name  text not null,
    auth        jsonb not null default '{}',   -- how to authenticate, never the secret itself
    header_fn   regproc,
    in_fn       regproc,
    out_fn      regproc,
    options     jsonb not null default '{}',
    dimensions  int check (dimensions is null or dimensions between 1 and 16000),
    owner       name not null default current_user,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);

-- Secrets live apart from the registry: only the model's owner (row-level security) and the
-- install role (which the model server connects as) can read them.
create table ai.model_secrets (
    model_id text primary key references ai.model_registry (model_id) on delete cascade on update cascade,
    secret   text not null
);
alter table ai.model_secrets enable row level security;
create policy model_secrets_owner on ai.model_secrets
    using (exists (select 1 from ai.model_registry r
                   where r.model_id = model_secrets.model_id and pg_has_role(current_user, r.owner, 'MEMBER')));

create table ai.model_grants (
    model_id text not null references ai.model_registry (model_id) on delete cascade on update cascade,
    grantee  name not null,     -- a role name, or 'public'
    granted_by name not null default current_user,
    granted_at timestamptz not null default now(),
    primary key (model_id, grantee)
);

-- Private settings the SQL functions need to reach the model server (its URL and token).
create table ai._settings (
    key   text primary key,
    value text not null
);

revoke all on ai.model_registry, ai.model_secrets, ai.model_grants, ai._settings from public;
