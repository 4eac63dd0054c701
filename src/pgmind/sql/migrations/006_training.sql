-- Training on the user's own rows (issue 11): jobs and their training pairs.
create table ai.training_jobs (
    id           bigserial primary key,
    kind         text not null check (kind in ('embedding', 'image_encoder')),
    source       text not null,              -- the knowledge base (vectorizer) or image query it learns from
    base_model   text not null,
    new_model    text not null,
    options      jsonb not null default '{}',
    state        text not null default 'queued'
                 check (state in ('queued', 'running', 'done', 'failed', 'cancelled')),
    progress     real not null default 0,    -- 0..1
    step         int not null default 0,
    loss         jsonb not null default '[]', -- [[step, loss], ...]
    metrics      jsonb not null default '{}', -- {"before": {...}, "after": {...}, "pairs": {...}}
    error        text,
    checkpoint   text,                        -- where a resumed job starts again
    cancel_requested boolean not null default false,
    owner        name not null default session_user,
    worker_id    text,
    heartbeat_at timestamptz,
    created_at   timestamptz not null default now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
-- The pairs a job trains on: given by the user, or written by the chat model (then the user may
-- read and edit them before a new job uses them).
create table ai.training_pairs (
    job_id   bigint not null references ai.training_jobs (id) on delete cascade,
    seq      int not null,
    question text not null,
    key      jsonb not null,                  -- the source row's key (a vectorizer's key columns)
    passage  text,                            -- the chunk it answers from, once resolved
    origin   text not null default 'given' check (origin in ('given', 'generated')),
    split    text not null default 'train' check (split in ('train', 'eval')),
    hard     boolean not null default false,  -- the base model did not find it: kept as a hard example
    primary key (job_id, seq)
);
alter table ai.training_jobs enable row level security;
alter table ai.training_pairs enable row level security;
-- (the policies, which call ai_internal._is_admin, are in functions/500_training.sql)
revoke all on ai.training_jobs, ai.training_pairs from public;
grant select on ai.training_jobs, ai.training_pairs to public;
grant update (question, split) on ai.training_pairs to public;
