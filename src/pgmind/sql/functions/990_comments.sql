-- What \df+ ai.*, \dv ai.* and \dt ai.* say in psql: one line each, and the fix for the most common
-- error.  Functions are commented by name (every overload alike), so a new signature keeps its line.
-- Objects whose name starts with "_" and the tables behind the views are internal.
do $$
declare
    c record;
    f regprocedure;
begin
    for c in select * from (values
        ('ai', 'embed', 'A text''s embedding (vector) from a registered model; a text[] gives (idx, embedding) rows. Over the model''s token limit: 22001, chunk the text (a vectorizer does).'),
        ('ai', 'embed_fixed', 'ai.embed declared IMMUTABLE, for generated columns and expression indexes. A model change does not re-embed: rebuild the column (docs/sql.md). Unknown model: 42704.'),
        ('ai', 'chat', 'A chat completion: messages (OpenAI''s shape) and options (temperature, max_tokens, tools, response_format, ...) -> {message, finish_reason, usage, model}. No grant: 42501, ai.grant_model.'),
        ('ai', 'generate', 'One answer to one prompt (and an optional system text) from a chat model. No grant: 42501, ask for ai.grant_model.'),
        ('ai', 'rerank', 'Relevance scores of documents to a query from a rerank model, in the documents'' order.'),
        ('ai', 'call_model', 'Calls a registered model through its input and output functions (POLAR_AI''s ai_callmodel). Transform errors come back with the function''s name.'),
        ('ai', 'create_model', 'Registers a model (local, OpenAI, DashScope, clip, any HTTP service); a local model''s id as name makes an alias. Administrators only: 42501.'),
        ('ai', 'alter_model', 'Changes a registered model''s URL, key, transform functions or options. Owner or administrator: 42501.'),
        ('ai', 'drop_model', 'Removes a registered model (refused while a vectorizer uses it: drop or alter the vectorizer first).'),
        ('ai', 'grant_model', 'Lets a role use a model (SQL and API keys alike).'),
        ('ai', 'revoke_model', 'Takes back a role''s use of a model.'),
        ('ai', 'create_api_key', 'An API key (pgmk-...) for the model server''s HTTP routes, acting as a role; shown once. Administrators only.'),
        ('ai', 'revoke_api_key', 'Ends an API key, by its first 12 characters.'),
        ('ai', 'allow_outbound', 'Lets the model server call a host (pattern like api.openai.com or 10.0.0.0/8). Administrators only.'),
        ('ai', 'disallow_outbound', 'Removes a host pattern from the outbound allow-list.'),
        ('ai', 'allow_load_from', 'Lets ai.load_file read under a path or URL prefix (file://, http(s)://, s3://). Administrators only.'),
        ('ai', 'disallow_load_from', 'Removes a prefix from the load allow-list.'),
        ('ai', 'load_file', 'The bytes of a file, URL or S3 object under the load allow-list. Not allowed: 42501, ask an administrator for ai.allow_load_from.'),
        ('ai', 'resize_image', 'An image resized (0 for a side keeps the ratio). Not an image: 22023.'),
        ('ai', 'image_as_base64', 'An image as base64 text, with a data: prefix if asked.'),
        ('ai', 'image_info', 'Format, width, height, mode, mime and bytes of an image. Not an image: 22023.'),
        ('ai', 'embed_image', 'An image''s embedding from an image model (image-features, CLIP). Not an image: 22023.'),
        ('ai', 'image_labels', 'The top k labels an image model gives an image, with probabilities.'),
        ('ai', 'image_text', 'The text in an image (OCR, Chinese and English).'),
        ('ai', 'create_vectorizer', 'Keeps a table''s embeddings current: chunks, embeds and indexes a text column (or images), in a view <name>_chunks. You must own the table: 42501.'),
        ('ai', 'alter_vectorizer', 'Changes a vectorizer''s model or chunking: re-embeds into a new version and switches atomically when done.'),
        ('ai', 'drop_vectorizer', 'Removes a vectorizer (and its chunks, unless drop_chunks => false).'),
        ('ai', 'vectorizer_backfill', 'Queues every row of a vectorizer''s table again.'),
        ('ai', 'vectorizer_retry', 'Retries a vectorizer''s failed rows (see ai.vectorizer_errors) now.'),
        ('ai', 'pause_vectorizer', 'Stops workers and Ray actors claiming a vectorizer''s queue (a batch in flight finishes; changes are still queued). Owner or administrator: else 42501.'),
        ('ai', 'resume_vectorizer', 'Lets workers claim a paused vectorizer''s queue again. Owner or administrator: else 42501.'),
        ('ai', 'vectorizer_shards', 'A Ray backfill''s plan: the vectorizer''s queue as contiguous key ranges covering every key. Owner or administrator: else 42501.'),
        ('ai', 'search', 'Search a vectorizer''s chunks by meaning, by words, or both (mode vector | keyword | hybrid), with a filter on the source table; expand => true also searches the chat model''s short answer (as RAG does), expansion => text your own. Unknown name: 42704.'),
        ('ai', 'search_images', 'Search an image vectorizer by text (Chinese or English) or by an image.'),
        ('ai', 'rag', 'An answer to a question from a knowledge base, with its sources, or a decline when the base does not hold it.'),
        ('ai', 'rag_prompt', 'The prompt ai.rag would send (retrieved chunks and all), to see or change it.'),
        ('ai', 'topic_score', 'How surely a question is about the knowledge base''s topic (a RAG setting): the chat model''s log-odds of yes against no; RAG declines below topic_threshold. null without a topic.'),
        ('ai', 'rag_defaults', 'The RAG settings and their defaults.'),
        ('ai', 'configure_rag', 'Sets a knowledge base''s RAG settings (model, k, threshold, rerank, ...). Unknown setting: 22023.'),
        ('ai', 'translate_query', 'A question rewritten into the knowledge base''s language (cross-language retrieval).'),
        ('ai', 'keyword_query', 'The tsquery the keyword search runs for a question (Chinese and English).'),
        ('ai', 'fts_text', 'The text the keyword index holds for a chunk (Chinese split into words).'),
        ('ai', 'finetune', 'Queues fine-tuning of an embedding model on a knowledge base (your pairs, or questions the chat model writes); returns the job id. Administrators only: 42501. Fewer than 8 pairs: 22023.'),
        ('ai', 'train_image_encoder', 'Queues training of an image encoder on your labelled images (query of image bytea, label), placed in a text model''s space so words find pictures; returns the job id. Administrators only: 42501. One label: 22023.'),
        ('ai', 'cancel_training', 'Stops a training job (yours, or any for administrators); a cancelled job registers nothing.'),
        ('polar_ai', 'ai_createmodel', 'POLAR_AI''s name for ai.create_model.'),
        ('polar_ai', 'ai_callmodel', 'POLAR_AI''s name for ai.call_model.'),
        ('polar_ai', 'ai_dropmodel', 'POLAR_AI''s name for ai.drop_model.'),
        ('polar_ai', 'ai_loadfile', 'POLAR_AI''s name for ai.load_file.'),
        ('polar_ai', 'ai_resizeimage', 'POLAR_AI''s name for ai.resize_image.'),
        ('polar_ai', 'ai_imageasbase64', 'POLAR_AI''s name for ai.image_as_base64.'),
        ('public', 'ai_loadfile', 'POLAR_AI''s name for ai.load_file (its tutorial calls it unqualified).'),
        ('public', 'ai_resizeimage', 'POLAR_AI''s name for ai.resize_image (its tutorial calls it unqualified).'),
        ('public', 'ai_imageasbase64', 'POLAR_AI''s name for ai.image_as_base64 (its tutorial calls it unqualified).')
    ) as t(nsp, fn, note) loop
        for f in select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                 where n.nspname = c.nsp and p.proname = c.fn loop
            execute format('comment on function %s is %L', f, c.note);
        end loop;
    end loop;

    for c in select * from (values
        ('training_jobs', 'Training jobs: state, progress, loss curve, retrieval before/after on held-out pairs, error.'),
        ('training_pairs', 'The question/row pairs a job trains and evaluates on (given or generated; you may edit question and split before training).'),
        ('training_images', 'An image encoder job''s labelled images, copied from its images query when the job was made (the runner runs no query of the owner''s).'),
        ('models', 'The registered models: id, provider, type, name, dimensions, owner (no secrets).'),
        ('providers', 'The model providers create_model takes, and what each does.'),
        ('model_grants', 'Which role may use which model.'),
        ('api_key_list', 'API keys: prefix, role, label, created, revoked (never the key).'),
        ('outbound_allow_list', 'The hosts the model server may call.'),
        ('load_allow_list', 'The path and URL prefixes ai.load_file may read.'),
        ('call_log', 'Every model call: model, operation, client, role, tokens, latency, status, error.'),
        ('vectorizers', 'Internal: the vectorizers (source table, content, owner), behind ai.vectorizer_status.'),
        ('vectorizer_status', 'Each vectorizer''s progress: rows pending, errors, lag.'),
        ('vectorizer_progress', 'Internal: rows and chunks each worker wrote, over time (for the rates in ai.vectorizer_status).'),
        ('vectorizer_errors', 'Rows a vectorizer could not embed, with the error; ai.vectorizer_retry retries them.'),
        ('vectorizer_workers', 'Internal: worker heartbeats, behind ai.vectorizer_worker_status.'),
        ('vectorizer_worker_status', 'Each vectorizer worker: host, pid, heartbeat, rows and chunks done, errors (the last error for administrators).'),
        ('vectorizer_versions', 'Internal: each vectorizer''s versions (model, chunking, store table; the active one is searched).'),
        ('vectorizer_queue', 'Internal: rows waiting for a vectorizer worker.'),
        ('model_registry', 'Internal: the table behind ai.models.'),
        ('model_secrets', 'Internal: model keys, readable by no one but the install role.'),
        ('api_keys', 'Internal: API key hashes (sha256), behind ai.api_key_list.'),
        ('outbound_allow', 'Internal: the table behind ai.outbound_allow_list.'),
        ('load_allow', 'Internal: the table behind ai.load_allow_list.'),
        ('load_secrets', 'Internal: credentials for ai.load_file prefixes.'),
        ('installed_files', 'Internal: the SQL files pgmind install applied, with their hashes.'),
        ('migrations', 'Internal: the schema migrations applied.'),
        ('_settings', 'Internal: installation settings (server URL).'),
        ('_vectorizer_errors', 'Internal: the table behind ai.vectorizer_errors.'),
        ('feedback', 'Thumbs up/down and corrected answers on RAG answers (the console writes them): each row its writer''s; the knowledge base''s owner and administrators read them; exported as a pgmind eval file.')
    ) as t(rel, note) loop
        if to_regclass('ai.' || quote_ident(c.rel)) is not null then
            execute format('comment on %s ai.%I is %L',
                           case (select relkind from pg_class where oid = to_regclass('ai.' || quote_ident(c.rel)))
                               when 'v' then 'view' else 'table' end, c.rel, c.note);
        end if;
    end loop;
end $$;
