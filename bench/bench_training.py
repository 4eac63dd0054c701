"""Training on own rows, measured against the untrained baseline in the same run.

    .venv/bin/python bench/bench_training.py images [--train 20000] [--epochs 3]
    .venv/bin/python bench/bench_training.py e5 [--questions 96] [--epochs 3] [--distractors 600]

images: an encoder taught Fashion-MNIST's ten labels (pgmind.training.images) into use-m3's space,
        trained on the train split, measured on the 10,000 test images it never saw: text → image
        precision@10 for the class names (English), Chinese names, paraphrases not used in training,
        and queries about things it was never taught (their similarity, which should stay low);
        image → image precision@10 against raw pixels.
e5:     ai.finetune on the demo's knowledge base pg_docs (make demo) with questions the chat model
        writes (no eval/ question is used), then retrieval of eval/dev.jsonl and eval/test.jsonl
        questions among their gold pages' chunks and random other chunks: base e5-small against the
        fine-tuned one.  Needs `pgmind serve` running (chat model, registration).
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

FMNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CHINESE = ["T恤", "裤子", "套头衫", "连衣裙", "外套", "凉鞋", "衬衫", "运动鞋", "包", "短靴"]
# not used in training: people's own words for four of the classes
PARAPHRASES = {"running shoes": 7, "运动鞋 跑步": 7, "a warm winter coat": 4, "女士手提包": 8, "jeans": 1,
               "牛仔裤": 1, "summer dress": 3, "夏天的裙子": 3}
OUTSIDE = ["a red car", "一只猫", "mountains at sunset", "数据库索引"]


def fashion(kind: str, n: int):
    from PIL import Image
    x = np.frombuffer(gzip.open(FMNIST / f"{kind}-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(FMNIST / f"{kind}-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return [Image.fromarray(a) for a in x[:n]], y[:n], x[:n]


def p10(scores: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> float:
    top = np.argsort(-scores, axis=1)[:, :10]
    return float((labels[top] == truth[:, None]).mean())


def images(args) -> None:
    import torch
    from pgmind.models.local.use import UseM3
    from pgmind.training import images as trainer
    torch.set_num_threads(args.threads)
    text = UseM3()
    train_imgs, ytr, _ = fashion("train", args.train)
    test_imgs, yte, xte_raw = fashion("t10k", 10000)
    targets = {}
    for i, name in enumerate(CLASSES):
        v = text.embed([name, CHINESE[i]], "query").vectors.mean(0)
        targets[name] = v / np.linalg.norm(v)
    start = time.perf_counter()
    net, held = trainer.train(train_imgs, [CLASSES[c] for c in ytr], targets,
                              {"epochs": args.epochs, "batch_size": 128}, lambda *a: True)
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        X = trainer.to_tensor(torch, test_imgs, 28, 1)
        V = torch.cat([torch.nn.functional.normalize(net(X[i:i + 1000]), dim=-1) for i in range(0, 10000, 1000)]).numpy()
    q = lambda texts: text.embed(texts, "query").vectors       # noqa: E731
    rows = [("class names, English", p10(q(CLASSES) @ V.T, np.arange(10), yte)),
            ("class names, Chinese", p10(q(CHINESE) @ V.T, np.arange(10), yte)),
            ("paraphrases (not trained on)", p10(q(list(PARAPHRASES)) @ V.T, np.array(list(PARAPHRASES.values())), yte))]
    base, queries = V[:9000], V[9000:]
    raw = xte_raw.reshape(10000, -1).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    i2i = p10(queries @ base.T, yte[9000:], yte[:9000])
    i2i_raw = p10(raw[9000:] @ raw[:9000].T, yte[9000:], yte[:9000])
    inside = (q(CLASSES) @ V.T).max(1)
    outside = (q(OUTSIDE) @ V.T).max(1)
    print(f"trained on {args.train} images, {args.epochs} epochs, {seconds:.0f} s ({args.train * args.epochs / seconds:.0f} images/s), "
          f"{sum(p.numel() for p in net.parameters()):,} parameters; held-out during training: {held}")
    print("| query | precision@10 on the 10,000 test images |\n|---|---|")
    for name, v in rows:
        print(f"| text → image, {name} | {v:.3f} |")
    print(f"| image → image (1,000 test queries, 9,000 test base) | {i2i:.3f} (raw pixels {i2i_raw:.3f}, {i2i / i2i_raw:.2f}×) |")
    print(f"best similarity of a query it was taught: mean {inside.mean():.3f}; of queries about other things "
          f"({', '.join(OUTSIDE)}): mean {outside.mean():.3f}, max {outside.max():.3f}")


def e5(args) -> None:
    import psycopg
    import torch
    from pgmind.config import load_settings
    from pgmind.db import resolve_dsn
    from pgmind.training import embedder
    from pgmind.training.jobs import run_next
    torch.set_num_threads(args.threads)
    settings = load_settings()
    dsn = resolve_dsn(settings)
    name = args.model or f"e5-small-pgdocs-{int(time.time())}"
    if not args.model:
        with psycopg.connect(dsn, autocommit=True) as conn:
            job_id = conn.execute("select ai.finetune('pg_docs', 'e5-small', %s, null, %s)", (name, json.dumps(
                {"questions": args.questions, "epochs": args.epochs, "force": True}))).fetchone()[0]
        start = time.perf_counter()
        job = run_next(settings, dsn, job_id)
        print(f"job {job_id}: {job['state']} {job['error'] or ''} in {time.perf_counter() - start:.0f} s; "
              f"metrics {json.dumps(job['metrics'])}")
        if job["state"] != "done":
            return
    from pgmind.models.local.e5 import E5Small
    base = E5Small("torch")._impl
    tuned = E5Small("torch", weights=str(settings.models_dir / "finetuned" / name / "encoder.pt"))._impl
    with psycopg.connect(dsn) as conn:
        for split in args.splits.split(","):
            qs = [json.loads(line) for line in (ROOT / "eval" / f"{split}.jsonl").read_text().splitlines() if line.strip()]
            qs = [q for q in qs if q.get("gold")]
            gold = sorted({g for q in qs for g in q["gold"]})
            pool = [(c, json.dumps([p])) for p, c in conn.execute(
                """select path, chunk from (select path, chunk, row_number() over (partition by path order by chunk_seq) n
                   from pg_docs_chunks where path = any(%s)) c where n <= 30""", (gold,)).fetchall()]
            pool += [(c, json.dumps([p])) for p, c in conn.execute(
                "select path, chunk from pg_docs_chunks where not path = any(%s) order by md5(chunk) limit %s",
                (gold, args.distractors)).fetchall()]
            texts = [c for c, _ in pool]
            Pb = embedder.embed_all(base, base._encoder, texts, False)
            Pt = embedder.embed_all(tuned, tuned._encoder, texts, False)
            for lang in ("en", "zh"):
                pairs = [embedder.Pair(q["question"], "", frozenset(json.dumps([g]) for g in q["gold"]))
                         for q in qs if q["lang"] == lang]
                b = embedder.rank_metrics(base, base._encoder, pairs, pool, Pb)
                t = embedder.rank_metrics(tuned, tuned._encoder, pairs, pool, Pt)
                print(f"| {split} {lang} ({len(pairs)} q, pool {len(pool)}) | recall@5 {b['recall@5']:.3f} → {t['recall@5']:.3f}"
                      f" | MRR {b['mrr']:.3f} → {t['mrr']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["images", "e5"])
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--questions", type=int, default=96)
    ap.add_argument("--distractors", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", help="e5: evaluate this fine-tuned model (already trained) instead of training one")
    ap.add_argument("--splits", default="dev,test", help="e5: the eval/ splits to measure")
    args = ap.parse_args()
    images(args) if args.what == "images" else e5(args)


if __name__ == "__main__":
    main()
