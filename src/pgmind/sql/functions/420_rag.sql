-- RAG: the question's best chunks (hybrid search), those above the similarity threshold as
-- numbered sources within a token budget, an instruction to cite them and to say when the
-- answer is not there, the answer from a chat model in the question's language.  SQL owns the
-- settings, the rights and the search; the prompt's text (budget, sentence choice, templates) is
-- pgmind.rag.compose, run by the model server on what the caller's own search returned.
drop function if exists ai._is_chinese(text);

-- The answer prompts were chosen on the tuning sets (docs/benchmarks.md).  The Chinese one asks for
-- the command only when the question asks how: asked for one always, the 1.5B answered a
-- non-technical knowledge base's question with nothing (tests/test_search_rag.py's panda).
create or replace function ai.rag_defaults() returns jsonb
language sql immutable as $$ select '{
    "model": "qwen-1.5b",
    "k": 5,
    "chunks_per_source": 2,
    "threshold": null,
    "rerank": null,
    "rerank_candidates": 5,
    "rerank_threshold": 0.5,
    "context_tokens": 2400,
    "source_sentences": [3, 3, 2, 1, 1],
    "max_tokens": 512,
    "ground": true,
    "system_en": "",
    "system_zh": "",
    "prompt_en": "Sources from the {topic} documentation:\n{sources}Question: {question}\nUsing only the sources, answer in one to three short sentences of your own words, in English, for {topic}. Start with the exact command, function or setting that does it, and cite the sources like [1].",
    "prompt_zh": "以下是{topic}文档中的资料:\n{sources}问题: {question}\n请只根据以上资料回答,针对{topic}。用一到三句简短的中文:第一句直接回答;问怎么做时,写出能做到这件事的具体命令、函数或设置名称并用中文说明,不要照抄资料。在句末注明出处编号,如 [1]。",
    "answer_style": "brief",
    "quote_prompt_en": "Sentences from the {topic} documentation, each after its label (S1, S2, ...), under their source [n]:\n{sources}Question: {question}\nFind the one sentence that best answers the question. Start your reply with its label and a colon, like \"S3: \", then answer the question in one short sentence of your own, in English, for {topic}, naming the exact command, function or setting.",
    "quote_prompt_zh": "以下是{topic}文档中的句子,每句前面是它的编号(S1、S2……),按出处 [n] 分组:\n{sources}问题: {question}\n找出最能回答这个问题的那一句。回答以它的编号和冒号开头,如 \"S3: \",然后用一句简短的中文回答问题,针对{topic},写出具体的命令、函数或设置名称。",
    "decline_en": "The knowledge base does not contain the answer.",
    "decline_zh": "知识库中没有这个问题的答案。",
    "language": null,
    "translate_model": "qwen-0.5b",
    "translate_prompt_en": "Translate this question into English. Reply with the English question only.\n\n{question}",
    "translate_prompt_zh": "把这个问题翻译成中文,只回答翻译后的问题。\n\n{question}",
    "expand": true,
    "expand_model": "qwen-1.5b",
    "expand_tokens": 64,
    "topic": null,
    "topic_model": "qwen-1.5b",
    "topic_threshold": 2.0,
    "topic_system": "You sort questions by subject. Answer only yes or no.",
    "topic_prompt": "A user of {topic} asks: \"{question}\"\n\nIs the question about {topic} itself (not about another product, program or subject)?",
    "expand_prompt_en": "Answer this question about {topic} in one or two short English sentences. Name the exact commands, functions, settings or terms involved.\n\nQuestion: {question}",
    "expand_prompt_zh": "用一两句简短的中文回答这个关于{topic}的问题,写出涉及的具体命令、函数、设置或术语。\n\n问题: {question}"
}'::jsonb $$;
grant execute on function ai.rag_defaults() to public;

-- A knowledge base's RAG and translation settings: the defaults, overridden by its own.
create or replace function ai_internal._kb_settings(config jsonb) returns jsonb
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select ai.rag_defaults() || coalesce(config->'rag', '{}')
$$;
grant execute on function ai_internal._kb_settings(jsonb) to public;

create or replace function ai.configure_rag(name text, config jsonb) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
    unknown text[];
begin
    perform ai_internal._check_vectorizer_owner(vid);
    if config is null or jsonb_typeof(config) <> 'object' then
        raise exception 'RAG settings must be a JSON object' using errcode = '22023',
            hint = 'e.g. ''{"k": 5, "threshold": 0.4}''; the settings are the keys of ai.rag_defaults()';
    end if;
    select array_agg(x) into unknown from jsonb_object_keys(config) x where not ai.rag_defaults() ? x;
    if unknown is not null then
        raise exception 'unknown RAG settings: %', array_to_string(unknown, ', ')
            using errcode = '22023', hint = 'the settings are the keys of ai.rag_defaults()';
    end if;
    -- each value of the type and range ai.rag uses it with: a bad one must fail here, not in every ai.rag
    select array_agg(format('%s = %s', key, value)) into unknown from jsonb_each(config) where not case
        when key = 'source_sentences' then jsonb_typeof(value) = 'null' or ai_internal._json_count(value, 1, 100)
                               or (jsonb_typeof(value) = 'array' and jsonb_array_length(value) between 1 and 100
                                   and not exists (select from jsonb_array_elements(value) x
                                                    where not ai_internal._json_count(x, 1, 100)))
        when key in ('k', 'chunks_per_source', 'rerank_candidates') then ai_internal._json_count(value, 1, 100)
        when key in ('context_tokens', 'max_tokens') then ai_internal._json_count(value, 1, 100000)
        when key = 'expand_tokens' then ai_internal._json_count(value, 1, 512)
        when key = 'threshold' then jsonb_typeof(value) = 'null'
                               or (jsonb_typeof(value) = 'number' and value::text::numeric between -1 and 1)
        when key = 'language' then jsonb_typeof(value) = 'null' or value #>> '{}' in ('en', 'zh')
        when key in ('translate_model', 'rerank', 'expand_model', 'topic', 'topic_model') then jsonb_typeof(value) in ('null', 'string')
        when key in ('expand', 'ground') then jsonb_typeof(value) = 'boolean'
        when key = 'answer_style' then value #>> '{}' in ('free', 'brief', 'quote')
        when key in ('rerank_threshold', 'topic_threshold') then jsonb_typeof(value) = 'number' and value::text::numeric between -1000 and 1000
        else jsonb_typeof(value) = 'string' end;
    if unknown is not null then
        raise exception 'invalid RAG settings: %', array_to_string(unknown, ', ')
            using errcode = '22023',
                  hint = 'k and chunks_per_source are 1..100, source_sentences 1..100, an array of them (one per source rank) or null; context_tokens and max_tokens positive integers, expand_tokens 1..512; threshold -1..1 or null; '
                         'language en, zh or null; rerank a model or null, rerank_candidates 1..100, '
                         'rerank_threshold and topic_threshold numbers; expand and ground true or false; answer_style free, brief or quote; the others texts (see ai.rag_defaults())';
    end if;
    update ai.vectorizers v
       set config = jsonb_set(v.config, '{rag}', coalesce(v.config->'rag', '{}') || configure_rag.config)
     where v.id = vid;
    return ai_internal._kb_settings((select v.config from ai.vectorizers v where v.id = vid));
end $$;
grant execute on function ai.configure_rag(text, jsonb) to public;

-- Retrieval and prompt, without generation: {"messages", "sources", "answered", "answer" (the
-- decline, when nothing passed the threshold), "model", "options", "topic_score", "sentences" (the
-- sources' sentences the prompt shows, with their similarity to the question: an answer's quote
-- is chosen from them), "ground" (whether answers are checked against the sources)}.  ai.rag
-- generates from it; the CLI and the HTTP API stream from it.
create or replace function ai.rag_prompt(name text, question text, k int default null, model text default null,
                                         threshold float8 default null, filter text default null)
returns jsonb language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    cfg jsonb;
    found jsonb := '[]';
    candidates jsonb := '[]';
    topic_score float8;
    ex text;
    best float8;
    bar float8;
    decline jsonb;
begin
    if name is null or question is null then
        return null;
    end if;
    if btrim(question) = '' then
        raise exception 'the question is empty' using errcode = '22023', hint = 'ask something';
    end if;
    perform ai_internal._check_query_length(array[question]);
    t := ai_internal._search_target(name, current_user);
    cfg := ai_internal._kb_settings(t.config);
    k := coalesce(k, (cfg->>'k')::numeric::int);
    model := coalesce(model, cfg->>'model');
    -- the threshold: this call's, else the knowledge base's, else the embedding model's calibrated
    -- one (options.rag_threshold), else 0.5 (a model nobody calibrated).  rag_defaults() says null,
    -- "the model's": a number there was not the one in force (issue 38)
    threshold := coalesce(threshold, (t.config->'rag'->>'threshold')::float8, t.model_threshold, 0.5);
    -- A question about another subject (another product, the weather) is declined before any
    -- search: its best chunks can be as close as a real question's.
    topic_score := ai_internal._topic_score(cfg, question);
    -- Whether the knowledge base holds the answer is decided once, from the best chunk: its
    -- similarity (to the question and its expansion) against the threshold, or with a reranker in
    -- the settings its relevance against rerank_threshold (calibrated by `pgmind eval --calibrate`
    -- / `--rerank`).  Then the top k chunks are the candidate sources, in the order ai.search ranks
    -- them (chunks of the best source rows first): rank fusion orders them better than similarity
    -- does.  At most chunks_per_source of them from one source row: without a cap a wrong first
    -- row fills every source.
    if not coalesce(topic_score < (cfg->>'topic_threshold')::float8, false) then
        -- the expansion is written here, not in ai.search: the sources' sentences are chosen with it too
        if (cfg->>'expand')::boolean then
            ex := ai_internal._expand(cfg, name, question);
        end if;
        with hits as (
                 select s.* from ai.search(name, question, k => k, mode => 'hybrid', filter => filter,
                                           chunks_per_source => (cfg->>'chunks_per_source')::numeric::int,
                                           rerank => cfg->>'rerank', expansion => ex,
                                           candidates => case when cfg->>'rerank' is not null
                                                              then (cfg->>'rerank_candidates')::numeric::int end) with ordinality
                          s(key, chunk_seq, chunk, score, similarity, vector_rank, keyword_rank, chunk_score, lists, pos))
        select coalesce(jsonb_agg(jsonb_build_object('key', h.key, 'chunk_seq', h.chunk_seq, 'chunk', h.chunk,
                                                     'score', h.score, 'similarity', h.similarity) order by h.pos), '[]'),
               max(case when cfg->>'rerank' is null then h.similarity else h.score end)
          into candidates, best
          from hits h;
        bar := case when cfg->>'rerank' is null then threshold else (cfg->>'rerank_threshold')::float8 end;
        if best >= bar then
            found := candidates;
        end if;
    end if;
    -- why a question is declined, with what was measured, so a reader (and the console) can tell an
    -- off-topic question from a threshold set too high for the model (a fine-tuned one's scale)
    decline := case
        when coalesce(topic_score < (cfg->>'topic_threshold')::float8, false) then
            jsonb_build_object('reason', 'off_topic', 'topic_score', topic_score,
                               'topic_threshold', (cfg->>'topic_threshold')::float8)
        when jsonb_array_length(candidates) = 0 then jsonb_build_object('reason', 'nothing_found')
        when jsonb_array_length(found) = 0 then
            jsonb_build_object('reason', 'below_threshold', 'best', best, 'threshold', bar,
                               'measure', case when cfg->>'rerank' is null then 'similarity' else 'rerank score' end,
                               'nearest', (select jsonb_agg(jsonb_build_object('key', c->'key', 'chunk_seq', c->'chunk_seq',
                                                                               'similarity', c->'similarity', 'score', c->'score'))
                                           from (select c from jsonb_array_elements(candidates) c
                                                 order by (c->>case when cfg->>'rerank' is null then 'similarity'
                                                                    else 'score' end)::float8 desc nulls last
                                                 limit 3) x))
        end;
    return ai_internal._json_request('/pgmind/v1/rag/compose',
               jsonb_build_object('settings', cfg, 'name', name, 'question', question, 'expansion', ex,
                                  'model', t.model, 'hits', found))
           || jsonb_build_object('model', model, 'topic_score', topic_score, 'ground', (cfg->>'ground')::boolean,
                                 'best_similarity', best, 'threshold', bar, 'decline', decline,
                                 'options', jsonb_build_object('max_tokens', (cfg->>'max_tokens')::numeric::int,
                                                               'temperature', 0.1));
end $$;
grant execute on function ai.rag_prompt(text, text, integer, text, double precision, text) to public;

-- The answer, checked against its sources (pgmind.rag.grounding, unless the setting "ground" is
-- false): a sentence whose value or name no source holds is left out, a citation that points at the
-- wrong source is corrected, the source sentence that best answers is quoted, and "confidence"
-- says how well the sources support what is left (supported / partly / not_confirmed).  "draft"
-- is the model's own answer when the check changed it; "grounding" the details.
create or replace function ai.rag(name text, question text, k int default null, model text default null,
                                  threshold float8 default null, filter text default null,
                                  options jsonb default '{}')
returns jsonb language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    p jsonb;
    reply jsonb;
    answer text;
    g jsonb;
begin
    p := ai.rag_prompt(name, question, k, model, threshold, filter);
    if p is null or not (p->>'answered')::boolean then
        return p - 'messages' - 'options' - 'sentences' - 'ground' - 'answer_style' || '{"usage": null, "confidence": null}';
    end if;
    reply := ai.chat(p->>'model', p->'messages', (p->'options') || coalesce(options, '{}'));
    answer := coalesce(reply->'message'->>'content', '');
    if coalesce((p->>'ground')::boolean, true) then
        g := ai_internal._json_request('/pgmind/v1/rag/ground',
                 jsonb_build_object('question', question, 'answer', answer, 'hits', p->'sources',
                                    'sentences', p->'sentences', 'answer_style', p->'answer_style'));
    end if;
    return jsonb_build_object('answer', coalesce(g->>'answer', answer), 'draft', g->'draft',
                              'confidence', g->'confidence', 'grounding', g->'grounding',
                              'sources', p->'sources', 'answered', true,
                              'usage', reply->'usage', 'model', p->>'model', 'topic_score', p->'topic_score',
                              'best_similarity', p->'best_similarity', 'threshold', p->'threshold');
end $$;
grant execute on function ai.rag(text, text, integer, text, double precision, text, jsonb) to public;
