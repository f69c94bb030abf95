"""The store's connection packs commands in C (hiredis) byte for byte as redis-py's asyncio packer does, and
leaves to redis-py what it does not pack the same way."""

from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis

from bot.store.connection import _Connection

CASES = [
    ("EVALSHA", "f" * 40, 3, "tg:{t:a}:state", "tg:{t:a}:log", "tg:{t:a}:lock", "", "ü ☃ 𝄞", -7, 2**62),
    ("CONFIG GET", "maxmemory"),
    ("SET", b"k\x00", b"\xff\xfe", "nx"),
    ("HSET", "h", "f", 1.5),  # a float: redis-py's own way
    ("PING",),
]


@pytest.mark.parametrize("args", CASES, ids=[c[0] for c in CASES])
def test_packing_matches_redis_py(args):
    ours, theirs = _Connection(), aioredis.Connection()
    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))


def test_random_script_calls_pack_the_same():
    rng = random.Random(7)
    ours, theirs = _Connection(), aioredis.Connection()
    alphabet = "abc \t\n\r\\\"'{}:é☃𝄞\x00"
    for _ in range(300):
        args = ["EVALSHA", "0" * 40, rng.randint(0, 8)]
        for _ in range(rng.randint(0, 30)):
            args.append(rng.choice([
                "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))),
                rng.randint(-10**12, 10**12),
                bytes(rng.randrange(256) for _ in range(rng.randint(0, 20))),
            ]))
        assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))
