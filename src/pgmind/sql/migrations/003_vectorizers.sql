-- Vectorizers: a source table's text kept chunked and embedded in a destination, by workers that
-- lease rows from a queue.  Plain tables and PL/pgSQL only: this works on any PostgreSQL with pgvector.

create table ai.vectorizers (
    id           int generated always as identity primary key,
    name         text not null unique check (name ~ '^[a-z_][a-z0-9_]{0,47}$'),
    source       regclass not null,
    key_columns  name[] not null,
    key_types    text[] not null,         -- format_type() of each key column
    content      text not null,           -- a SQL expression over the source row's columns
    owner        name not null,           -- the source table's owner: content is read with its rights
    dest_schema  name not null,
    dest_view    name not null,           -- <name>_chunks: a view over the active version's table
    trigger_fn   text not null,           -- the generated trigger function (regprocedure text)
    config       jsonb not null default '{}',
    created_at   timestamptz not null default now()
);

create table ai.vectorizer_versions (
    vectorizer_id int not null references ai.vectorizers (id) on delete cascade,
    version       int not null,
    model         text not null,
    chunking      jsonb not null,
    index_spec    jsonb not null,
    dimensions    int not null,
    store_table   name not null,          -- <name>_chunks_v<version>, in dest_schema
    status        text not null check (status in ('building', 'active')),
    created_at    timestamptz not null default now(),
    activated_at  timestamptz,
    primary key (vectorizer_id, version)
);

create sequence ai.vectorizer_queue_seq;

-- One row per source key waiting to be (re-)embedded for one version.  seq changes on every
-- enqueue, so a worker that finishes an older read of the row leaves the newer request queued.
create table ai.vectorizer_queue (
    vectorizer_id   int not null,
    version         int not null,
    key             jsonb not null,
    seq             bigint not null default nextval('ai.vectorizer_queue_seq'),
    queued_at       timestamptz not null default now(),
    attempts        int not null default 0,
    next_attempt_at timestamptz not null default now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    primary key (vectorizer_id, version, key),
    foreign key (vectorizer_id, version) references ai.vectorizer_versions on delete cascade
);
create index vectorizer_queue_ready on ai.vectorizer_queue (vectorizer_id, version, next_attempt_at);

-- Rows the model rejected (poison rows): kept out of the queue until ai.vectorizer_retry.
create table ai._vectorizer_errors (
    vectorizer_id int not null,
    version       int not null,
    key           jsonb not null,
    error         text not null,
    sqlstate      text,
    attempts      int not null,
    failed_at     timestamptz not null default now(),
    primary key (vectorizer_id, version, key),
    foreign key (vectorizer_id, version) references ai.vectorizer_versions on delete cascade
);

create table ai.vectorizer_workers (
    worker_id    text primary key,
    hostname     text not null,
    pid          int not null,
    started_at   timestamptz not null default now(),
    heartbeat_at timestamptz not null default now(),
    rows_done    bigint not null default 0,
    chunks_done  bigint not null default 0,
    errors       bigint not null default 0,
    last_error   text
);

create table ai.vectorizer_progress (
    vectorizer_id int not null,
    version       int not null,
    at            timestamptz not null default now(),
    rows          int not null,
    chunks        int not null,
    worker_id     text
);
create index vectorizer_progress_at on ai.vectorizer_progress (vectorizer_id, at);

revoke all on ai.vectorizers, ai.vectorizer_versions, ai.vectorizer_queue, ai._vectorizer_errors,
              ai.vectorizer_workers, ai.vectorizer_progress from public;
