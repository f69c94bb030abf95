"""Members' files: time and memory to prepare a 12 MB 6000x4000 photo and a 50-page PDF, the Redis bytes a
thread's stored files take, and the Redis round trips of turns with files, on a real redis-server.

    python bench/attachments_bench.py [--runs 3]

Checks that the timed work succeeded (the photo scaled to at most 1568 px within 5 MB of base64, the PDF
kept whole, the files read back byte for byte) and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import multiprocessing
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
from bot.types import Attachment, Author, IncomingMessage, ThreadRef
from config.settings import AttachmentSettings, StoreSettings
from tests.support import files
from tests.support.redis_servers import RedisServer


def _high_water() -> int:
    """The process's peak resident memory in bytes (VmHWM; unlike ru_maxrss it starts afresh at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child_peak(name: str, media_type: str, data: bytes, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """In a fresh process: its peak resident memory before and after preparing one file (bytes)."""
    prepare([Attachment("warm.png", "image/png", 0, data=files.png())], AttachmentSettings())  # libraries loaded
    before = _high_water()
    prepared = prepare([Attachment(name, media_type, len(data), data=data)], AttachmentSettings())
    assert prepared.kept, prepared.lines
    queue.put((before, _high_water()))


def peak_memory(attachment: Attachment) -> tuple[int, int]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_peak, args=(attachment.name, attachment.media_type, attachment.data, queue))
    child.start()
    before, after = queue.get(timeout=120)
    child.join()
    return int(before), int(after)


def _mb(peaks: tuple[int, int]) -> str:
    return f"{peaks[1] / 1e6:.0f} MB ({peaks[0] / 1e6:.0f} MB before preparing: libraries and the file's bytes)"


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
          f"peak RSS of a fresh process {_mb(peak_memory(attachment))}; "
          f"sent {len(payload['d']) / 1e6:.2f} MB of base64")


async def redis_bytes() -> None:
    limits = AttachmentSettings()
    prepared = prepare([Attachment("photo.jpg", "image/jpeg", 0, data=files.photo_12mb()),
                        Attachment("shot.png", "image/png", 0, data=files.png(1200, 800)),
                        Attachment("doc.pdf", "application/pdf", 0, data=files.scanned_pdf(50)),
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
            await round_trips(client)
            print(f"redis: a thread with a photo, a screenshot, a 50-page PDF and a log: {used / 1e6:.2f} MB "
                  f"in Redis for {payload / 1e6:.2f} MB of prepared content (bound per thread "
                  f"{limits.thread_max_bytes / 1e6:.0f} MB, {limits.thread_max_files} files)")
        finally:
            await client.aclose()


async def round_trips(client: redis.asyncio.Redis) -> None:
    """Round trips of a text turn, of a turn with a file, and of a text turn in a thread that has files."""
    from bot.bootstrap import build_runtime
    from config.settings import AnthropicSettings, RedisSettings, Settings

    runtime = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                            redis=client)
    thread = ThreadRef("console", "bench", "c", "trips")
    counted = []
    for n, files_ in enumerate([(), (Attachment("a.png", "image/png", 0, data=files.png()),), ()]):
        before = runtime.store.health.round_trips
        outcome = await runtime.member_actions.handle_message(
            IncomingMessage(thread, Author("u", "u"), f"message {n}", f"m{n}", attachments=files_))
        assert outcome.model_called, outcome
        counted.append(runtime.store.health.round_trips - before)
    print(f"redis round trips: a text turn {counted[0]}, a turn with a file {counted[1]}, "
          f"a text turn in a thread with files {counted[2]}")
    assert counted[0] == 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    photo = files.photo_12mb()
    timed("12 MB 6000x4000 photo", Attachment("photo.jpg", "image/jpeg", len(photo), data=photo), args.runs)
    pdf = files.scanned_pdf(50)
    timed("50-page scanned PDF", Attachment("doc.pdf", "application/pdf", len(pdf), data=pdf), args.runs)
    asyncio.run(redis_bytes())


if __name__ == "__main__":
    main()
