-- Answer feedback (ai.feedback, migration 010): a role records feedback as itself, naming the
-- knowledge base it asked (the id must be that name's); the writer reads its own rows, the knowledge
-- base's owner (members of its role) and administrators read and delete every row about it.
alter table ai.feedback enable row level security;
drop policy if exists feedback_insert on ai.feedback;
create policy feedback_insert on ai.feedback for insert
    with check (created_by = current_user and vectorizer_id = ai_internal._vectorizer_id(vectorizer));
drop policy if exists feedback_select on ai.feedback;
create policy feedback_select on ai.feedback for select
    using (created_by = current_user or ai_internal._owns_vectorizer(vectorizer_id, current_user));
drop policy if exists feedback_delete on ai.feedback;
create policy feedback_delete on ai.feedback for delete
    using (ai_internal._owns_vectorizer(vectorizer_id, current_user));
grant select, insert, delete on ai.feedback to public;
grant usage on sequence ai.feedback_id_seq to public;
