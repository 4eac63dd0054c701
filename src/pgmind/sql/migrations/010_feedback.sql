-- Answer feedback (issue 39): thumbs up or down on an answer of ai.rag / the console's Ask page, and a
-- corrected answer, exported as a `pgmind eval` questions file.  A role writes its own rows; the
-- knowledge base's owner (and administrators) read every row about it, through row-level security.
-- Released migrations are never edited: add a new numbered file instead.
create table ai.feedback (
    id            bigint generated always as identity primary key,
    vectorizer_id int not null,              -- (kept when the knowledge base is dropped: the owner's record)
    vectorizer    text not null,
    question      text not null check (length(question) <= 10000),
    answer        text check (length(answer) <= 100000),
    answered      boolean not null,
    rating        smallint check (rating in (-1, 1)),
    correction    text check (length(correction) <= 100000),
    sources       jsonb not null default '[]' check (jsonb_typeof(sources) = 'array'),
    lang          text,
    created_by    name not null default current_user,
    created_at    timestamptz not null default now(),
    check (rating is not null or correction is not null)
);
create index feedback_vectorizer on ai.feedback (vectorizer_id, id);

-- (its row-level security policies and grants are in sql/functions/440_feedback.sql, beside the
-- functions they call, re-applied on every install)
alter table ai.feedback enable row level security;
revoke all on ai.feedback from public;
