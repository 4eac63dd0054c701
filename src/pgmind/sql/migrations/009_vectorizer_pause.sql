-- A vectorizer can be paused (issue 39, issue 40): while paused_at is set no worker and no Ray
-- backfill claims its queue (batches already claimed finish and are written).  paused_by names the
-- role that paused it, for the status.
-- Released migrations are never edited: add a new numbered file instead.
alter table ai.vectorizers add column paused_at timestamptz;
alter table ai.vectorizers add column paused_by name;
