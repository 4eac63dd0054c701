-- The services stop running as the install role (issue 35).  Tables only; the roles themselves are
-- made by the installer (db/migrate.py), which needs a superuser for them.
-- Released migrations are never edited: add a new numbered file instead.

-- What each database role sends the model server when a SQL function calls it: a credential of
-- its own, which row-level security lets only that role read (ai_internal._role_token).  Code that
-- runs as a role can act for that role, and for no other: the model server takes the role from
-- the token, never from a name the code passes.  A token is 'pgr-<oid>-<mac>', the mac keyed by
-- role_token_secret (below), so the server checks it without reading this table (a token made in
-- a transaction that has not committed yet works at once).
create table ai_internal.role_tokens (
    role_oid    oid primary key,
    token       text not null,
    created_at  timestamptz not null default now()
);
insert into ai._settings (key, value)
values ('role_token_secret', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));
alter table ai_internal.role_tokens enable row level security;
create policy own_token on ai_internal.role_tokens for select
    using (role_oid = (select r.oid from pg_catalog.pg_roles r where r.rolname = current_user));
revoke all on ai_internal.role_tokens from public;
grant select on ai_internal.role_tokens to public;

-- API keys are bound to the role's OID: a dropped role's key dies with it, a new role of the same
-- name gets nothing.
alter table ai.api_keys add column role_oid oid;
update ai.api_keys k set role_oid = r.oid from pg_catalog.pg_roles r where r.rolname = k.role_name;

-- The image encoder's training set, copied when the job is made (with its owner's rights, in its
-- owner's session): the runner never runs a query of the owner's.
create table ai.training_images (
    job_id bigint not null references ai.training_jobs (id) on delete cascade,
    seq    int not null,
    image  bytea not null,
    label  text not null,
    primary key (job_id, seq)
);
alter table ai.training_images enable row level security;
revoke all on ai.training_images from public;

-- The server's token is no longer shared with the database (roles send their own tokens).
delete from ai._settings where key = 'server_token';
