"""Image search (issue: images).  One run, ratios against baselines measured in the same run:

- image → image precision@10 on Fashion-MNIST (test images as queries, train images as the base, a
  hit is the same class): EfficientNet-Lite0 ImageNet features at 112 and 224 px vs raw pixels;
- text → image precision@10 on Fashion-MNIST (class names, English and Chinese) and on real photos
  (Debian darknet's and scikit-learn's, stored as bytes with neutral names, queries written here),
  through ai.search_images (labels nearest in meaning + keyword search; no CLIP weights ship offline);
- images embedded per second: the image vectorizer vs the bare model; OCR images per second;
- ai.search_images latency p50/p95 with and without a selective filter; HNSW recall@10 vs exact.

    .venv/bin/python bench/bench_images.py [--base 3000] [--queries 300] [--kb 1000]
"""
from __future__ import annotations

import argparse
import gzip
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from pgmind.db import connect  # noqa: E402
from pgmind.devserver import Sandbox  # noqa: E402
from pgmind.vectorizer.worker import Worker  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = [("T-shirt", "T恤"), ("trousers", "裤子"), ("pullover sweater", "套头毛衣"), ("dress", "连衣裙"),
           ("coat", "外套"), ("sandal", "凉鞋"), ("shirt", "衬衫"), ("sneaker", "运动鞋"), ("bag", "包"),
           ("ankle boot", "短靴")]
PHOTOS = {  # file → (English query, Chinese query), written for this benchmark
    "/usr/share/darknet/data/dog.jpg": ("a dog", "一只狗"),
    "/usr/share/darknet/data/eagle.jpg": ("an eagle", "老鹰"),
    "/usr/share/darknet/data/giraffe.jpg": ("a giraffe", "长颈鹿"),
    "/usr/share/darknet/data/horses.jpg": ("horses", "马群"),
    "/usr/share/darknet/data/kite.jpg": ("people on a beach", "海滩"),
    "/usr/share/darknet/data/scream.jpg": ("a painting", "一幅画"),
    "sklearn:china.jpg": ("a temple", "寺庙"),
    "sklearn:flower.jpg": ("a flower", "一朵花"),
}


def fashion(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.frombuffer(gzip.open(FMNIST / f"{kind}-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(FMNIST / f"{kind}-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    return x[:n], y[:n]


def png(a: np.ndarray) -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(a).save(out, "PNG")
    return out.getvalue()


def precision_at_10(base: np.ndarray, yb: np.ndarray, q: np.ndarray, yq: np.ndarray) -> float:
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    top = np.argsort(-(q @ base.T), axis=1)[:, :10]
    return float((yb[top] == yq[:, None]).mean())


def image_to_image(args) -> list[str]:
    from PIL import Image
    from pgmind.models.local.efficientnet import EfficientNetLite0
    xb, yb = fashion("train", args.base)
    xq, yq = fashion("t10k", args.queries)
    lines = ["| representation | image → image P@10 | vs raw pixels | images/s (bare model) |", "|---|---|---|---|"]
    raw = precision_at_10(xb.reshape(len(xb), -1).astype(np.float32), yb, xq.reshape(len(xq), -1).astype(np.float32), yq)
    lines.append(f"| raw pixels (cosine) | {raw:.3f} | 1.00× | — |")
    for size in (112, 224):
        m = EfficientNetLite0(size=size)
        imgs = [Image.fromarray(a).convert("RGB") for a in np.concatenate([xb, xq])]
        t = time.perf_counter()
        emb = np.concatenate([m.embed_images(imgs[i:i + 64]) for i in range(0, len(imgs), 64)])
        rate = len(imgs) / (time.perf_counter() - t)
        p = precision_at_10(emb[:len(xb)], yb, emb[len(xb):], yq)
        lines.append(f"| EfficientNet-Lite0 features, {size} px | {p:.3f} | {p / raw:.2f}× | {rate:.0f} |")
    return lines


def knowledge_base(sb, args) -> tuple[list[str], dict]:
    """Fashion-MNIST test images into an image vectorizer (bytes), timed against the bare model."""
    from PIL import Image
    from pgmind.models.local.efficientnet import EfficientNetLite0
    x, y = fashion("t10k", args.kb)
    files = [png(a) for a in x]
    m = EfficientNetLite0()
    t = time.perf_counter()
    for i in range(0, len(files), 32):
        m.embed_and_label([Image.open(io.BytesIO(f)) for f in files[i:i + 32]], 5)
    bare = len(files) / (time.perf_counter() - t)
    with connect(sb.dsn, autocommit=True) as conn:
        conn.execute("create table fm (id int primary key, label int, img bytea)")
        with conn.cursor().copy("copy fm (id, label, img) from stdin") as cp:
            for i, (f, lab) in enumerate(zip(files, y)):
                cp.write_row((i, int(lab), f))
        conn.execute("select ai.create_vectorizer('fm'::regclass, name => 'fm', content => 'img', modality => 'image')")
    w = Worker(sb.settings, sb.dsn, names=["fm"], batch_rows=32, poll_interval=0.05)
    w.embedder.embed_images("image-features", [files[0]])        # load the model before the clock starts
    t = time.perf_counter()
    w.drain()
    vec = len(files) / (time.perf_counter() - t)
    w.close()
    lines = ["| pipeline | images/s | vs bare model |", "|---|---|---|",
             f"| bare model (features + labels, in-process) | {bare:.1f} | 1.00× |",
             f"| image vectorizer (read, embed, label, write) | {vec:.1f} | {vec / bare:.2f}× |"]
    return lines, {"y": y}


def text_to_image(sb, kb) -> list[str]:
    y = kb["y"]
    out = ["| queries | text → image P@10 |", "|---|---|"]
    with connect(sb.dsn, autocommit=True) as conn:
        for lang in (0, 1):
            ps = []
            for c, names in enumerate(CLASSES):
                ids = [r[0]["id"] for r in conn.execute("select key from ai.search_images('fm', %s, k => 10)",
                                                        (names[lang],)).fetchall()]
                ps.append(sum(int(y[i]) == c for i in ids) / 10)
            out.append(f"| Fashion-MNIST class names, {'English' if lang == 0 else 'Chinese'} | {statistics.mean(ps):.3f} |")
    return out


def photos(sb) -> list[str]:
    import sklearn
    rows = []
    for i, (f, _) in enumerate(PHOTOS.items()):
        path = Path(sklearn.__file__).parent / "datasets/images" / f.split(":")[1] if f.startswith("sklearn:") else Path(f)
        rows.append((i, path.read_bytes()))
    with connect(sb.dsn, autocommit=True) as conn:
        conn.execute("create table photos (id int primary key, img bytea)")
        for r in rows:
            conn.execute("insert into photos values (%s, %s)", r)
        conn.execute("select ai.create_vectorizer('photos'::regclass, name => 'photos', content => 'img', "
                     "modality => 'image', ocr => true)")
        w = Worker(sb.settings, sb.dsn, names=["photos"], poll_interval=0.05)
        w.drain()
        w.close()
        out = ["| real photos (8, neutral names) | first hit right | right one in top 3 |", "|---|---|---|"]
        for lang in (0, 1):
            first = top3 = 0
            for i, qs in enumerate(PHOTOS.values()):
                ids = [r[0]["id"] for r in conn.execute("select key from ai.search_images('photos', %s, k => 3)",
                                                        (qs[lang],)).fetchall()]
                first += bool(ids) and ids[0] == i
                top3 += i in ids
            out.append(f"| {'English' if lang == 0 else 'Chinese'} queries | {first}/8 | {top3}/8 |")
    return out


def latency_and_recall(sb, n: int = 60) -> list[str]:
    with connect(sb.dsn, autocommit=True) as conn:
        imgs = [r[0] for r in conn.execute("select img from fm order by id limit %s", (n,)).fetchall()]
        out = ["| ai.search_images (image query, k 10) | p50 ms | p95 ms |", "|---|---|---|"]
        for label, flt in (("no filter", None), ("filter: 1% of rows (id % 100 = 0)", "id % 100 = 0")):
            times, counts = [], []
            for img in imgs:
                t = time.perf_counter()
                rows = conn.execute("select key from ai.search_images('fm', %s, k => 10, filter => %s)", (img, flt)).fetchall()
                times.append((time.perf_counter() - t) * 1000)
                counts.append(len(rows))
            qs = statistics.quantiles(times, n=20)
            out.append(f"| {label} (rows returned: min {min(counts)}) | {statistics.median(times):.1f} | {qs[18]:.1f} |")
        store = conn.execute("select format('%I.%I', dest_schema, store_table) from ai.vectorizers v "
                             "join ai.vectorizer_versions ver on ver.vectorizer_id = v.id where v.name = 'fm'").fetchone()[0]
        hits = 0
        qv = [r[0] for r in conn.execute(f"select embedding::text from {store} order by random() limit {n}").fetchall()]
        for q in qv:
            with conn.transaction():
                approx = {r[0] for r in conn.execute(f"select path from (select key as path, embedding <=> %s::vector d "
                                                     f"from (select id as key, embedding from {store}) s order by d limit 10) x", (q,))}
                conn.execute("set local enable_indexscan = off")
                exact = {r[0] for r in conn.execute(f"select path from (select key as path, embedding <=> %s::vector d "
                                                    f"from (select id as key, embedding from {store}) s order by d limit 10) x", (q,))}
            hits += len(approx & exact)
        out.append(f"\nHNSW recall@10 vs exact: {hits / (10 * len(qv)):.3f} ({len(qv)} queries)")
    return out


def ocr_rate() -> str:
    from images_fixture import text_image
    from pgmind.images.ocr import read_text
    imgs = [text_image([f"第 {i} 号 出口 Exit {i}", f"欢迎光临 Welcome {i}"]) for i in range(10)]
    read_text(imgs[0])
    t = time.perf_counter()
    right = sum(f"Exit {i}" in read_text(img)["text"] for i, img in enumerate(imgs))
    return f"\nOCR: {len(imgs) / (time.perf_counter() - t):.2f} images/s (rendered zh+en signs, {right}/10 read right)"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", type=int, default=3000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--kb", type=int, default=1000)
    args = p.parse_args()
    print("\n".join(image_to_image(args)))
    with Sandbox() as sb:
        lines, kb = knowledge_base(sb, args)
        print()
        print("\n".join(lines))
        print()
        print("\n".join(text_to_image(sb, kb)))
        print()
        print("\n".join(photos(sb)))
        print()
        print("\n".join(latency_and_recall(sb)))
    print(ocr_rate())


if __name__ == "__main__":
    main()
