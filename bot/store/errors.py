"""What a failing store raises, for surfaces that talk to the store's client directly (dashboard sign-in)."""

from __future__ import annotations

from redis.exceptions import RedisError

from bot.errors import StoreUnavailable

#: Catch these around direct client calls: the storage is down or failing, not the request.
STORE_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, StoreUnavailable)
