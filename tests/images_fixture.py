"""Images the image tests make themselves: every format Pillow writes, broken files, a
decompression bomb, text rendered in Chinese and English, and a tiny random CLIP checkpoint."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"


def picture(color=(220, 40, 40), size=(120, 80), shape="circle", fmt="PNG") -> bytes:
    from PIL import Image, ImageDraw
    img = Image.new("RGB", size, (245, 245, 240))
    d = ImageDraw.Draw(img)
    box = (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=color)
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def text_image(lines: list[str], size=(560, 160)) -> bytes:
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.truetype(FONT, 30)
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        d.text((12, 12 + 60 * i), line, font=font, fill="black")
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def png_bomb(width=100_000, height=100_000) -> bytes:
    """A small PNG whose header claims width × height pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")


def tiny_clip(path: Path, dim: int = 512) -> Path:
    """A randomly initialised CLIP (transformers) with a word-level tokenizer, saved to path."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast
    torch.manual_seed(0)
    words = "a the black white red blue car truck dog cat night snow day in on of 一只 狗 猫 汽车".split()
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    config = CLIPConfig(text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37,
                                     "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 32,
                                     "eos_token_id": 1, "pad_token_id": 0},
                        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
                        projection_dim=dim)
    CLIPModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def moto_s3(bucket: str, objects: dict[str, bytes], key_id: str, secret: str, public: tuple[str, ...] = ()):
    """moto's S3 server on loopback (a local stand-in for an S3-compatible store: Alibaba OSS speaks the
    same protocol) with one bucket of ``objects``, those in ``public`` world-readable.  Returns
    (url, server): stop the server when done."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    srv.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key_id,
                          aws_secret_access_key=secret)
    client.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body, **({"ACL": "public-read"} if key in public else {}))
    return url, srv
