-- Security groundwork: which function files are installed (install skips unchanged ones, so a
-- re-run never replaces a function under a call in flight), API keys for HTTP users mapped to
-- database roles, and the hosts the model server may send requests to.
-- Released migrations are never edited: add a new numbered file instead.

create table ai.installed_files (
    name       text primary key,
    sha256     text not null,
    applied_at timestamptz not null default now()
);

-- API keys: only their sha256 is stored; the key is shown once, when it is made.
create table ai.api_keys (
    id          int generated always as identity primary key,
    key_sha256  text not null unique,
    key_prefix  text not null,              -- the first characters, to recognise a key in listings
    role_name   name not null,              -- the database role whose grants the key carries
    label       text,
    created_by  name not null default current_user,
    created_at  timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at  timestamptz
);

-- Outbound requests: a URL's host must match an entry (a host name, *.domain, an IP address or a
-- CIDR range, optionally with :port).  Loopback, private and link-local addresses must be allowed
-- by an address entry, whatever name they were reached by.
create table ai.outbound_allow (
    pattern    text primary key,
    added_by   name not null default current_user,
    added_at   timestamptz not null default now()
);
insert into ai.outbound_allow (pattern) values ('api.openai.com'), ('dashscope.aliyuncs.com');

revoke all on ai.installed_files, ai.api_keys, ai.outbound_allow from public;
