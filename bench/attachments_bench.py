"""Members' files: time and memory to prepare a 12 MB 6000x4000 photo and a 50-page PDF, and the Redis
bytes a thread's stored files take, on a real redis-server.

    python bench/attachments_bench.py [--runs 3]

Checks that the timed work succeeded (the photo scaled to at most 1568 px within 5 MB of base64, the PDF
kept whole, the files read back byte for byte) and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import redis.asyncio
from PIL import Image

from bot.attachments import prepare
from bot.store import keys
from bot.store.redis_store import build_store
from bot.types import Attachment, ThreadRef
from config.settings import AttachmentSettings, StoreSettings
from tests.support import files
from tests.support.redis_servers import RedisServer


def timed(name: str, attachment: Attachment, runs: int) -> None:
    limits = AttachmentSettings()
    seconds, peaks = [], []
    for _ in range(runs):
        tracemalloc.start()
        started = time.perf_counter()
        prepared = prepare([attachment], limits)
        seconds.append(time.perf_counter() - started)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        (kept,) = prepared.kept
        payload = orjson.loads(kept.payload)
        if kept.ref.kind == "image":
            assert len(payload["d"]) <= 5_242_880
            with Image.open(io.BytesIO(base64.b64decode(payload["d"]))) as img:
                assert max(img.size) <= 1568, img.size
        else:
            assert base64.b64decode(payload["d"]) == attachment.data
    size = len(attachment.data or b"")
    print(f"{name}: {size / 1e6:.2f} MB in; prepare median {statistics.median(seconds) * 1000:.0f} ms "
          f"(min {min(seconds) * 1000:.0f}); peak Python-heap memory {max(peaks) / 1e6:.1f} MB; "
          f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"sent {len(payload['d']) / 1e6:.2f} MB of base64")


async def redis_bytes() -> None:
    limits = AttachmentSettings()
    prepared = prepare([Attachment("photo.jpg", "image/jpeg", 0, data=files.photo_12mb()),
                        Attachment("shot.png", "image/png", 0, data=files.png(1200, 800)),
                        Attachment("doc.pdf", "application/pdf", 0, data=files.pdf(50)),
                        Attachment("app.log", "text/plain", 0, data=b"line\n" * 5000)], limits)
    assert len(prepared.kept) == 4, prepared.lines
    with RedisServer() as server:
        client = redis.asyncio.Redis.from_url(server.url, decode_responses=True)
        try:
            store = build_store(client, StoreSettings(), attachments=limits)
            thread = ThreadRef("discord", "g", "c", "bench")
            await store.files.put(thread, [(p.ref.id, p.payload) for p in prepared.kept])
            back = await store.files.get(thread, [p.ref.id for p in prepared.kept])
            assert back == {p.ref.id: p.payload for p in prepared.kept}
            used = sum([int(await client.memory_usage(k) or 0) for k in (keys.files(thread.key),
                                                                       keys.files_order(thread.key))])
            payload = sum(len(p.payload) for p in prepared.kept)
            print(f"redis: a thread with a photo, a screenshot, a 50-page PDF and a log: {used / 1e6:.2f} MB "
                  f"in Redis for {payload / 1e6:.2f} MB of prepared content (bound per thread "
                  f"{limits.thread_max_bytes / 1e6:.0f} MB, {limits.thread_max_files} files)")
        finally:
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    photo = files.photo_12mb()
    timed("12 MB 6000x4000 photo", Attachment("photo.jpg", "image/jpeg", len(photo), data=photo), args.runs)
    pdf = files.pdf(50)
    timed("50-page PDF", Attachment("doc.pdf", "application/pdf", len(pdf), data=pdf), args.runs)
    asyncio.run(redis_bytes())


if __name__ == "__main__":
    main()
