"""What a failing store raises: for the store modules, which turn it into ``StoreUnavailable``, and for
surfaces that talk to the store's client directly (dashboard sign-in)."""

from __future__ import annotations

from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError

from bot.errors import StoreUnavailable

#: What a Redis request raises when the store goes away. AttributeError too: redis-py's cluster client can
#: write to a connection that a failover closed under it (``'NoneType' object has no attribute 'writelines'``).
STORE_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, AttributeError)

#: Catch these around direct client calls: the storage is down or failing, not the request.
STORE_ERRORS: tuple[type[BaseException], ...] = (*STORE_FAILURES, StoreUnavailable)

#: Redis answers but refuses writes: out of memory under ``noeviction``, or a read-only replica.
WRITE_REFUSALS: tuple[type[BaseException], ...] = (OutOfMemoryError, ReadOnlyError)
