"""The store's roles stay small: each protocol in ``bot.store`` at most 12 methods, and ``Store`` holds one
part per role."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Protocol

import bot.store

MAX_METHODS = 12


def _roles() -> dict[str, type]:
    return {name: obj for name, obj in vars(bot.store).items()
            if inspect.isclass(obj) and Protocol in obj.__mro__ and obj is not Protocol
            and obj.__module__ == bot.store.__name__}


def _methods(role: type) -> list[str]:
    return [name for name, value in vars(role).items() if not name.startswith("_") and callable(value)]


def test_no_storage_role_has_more_than_twelve_methods():
    sizes = {name: len(_methods(role)) for name, role in _roles().items()}
    assert sizes and all(n > 0 for n in sizes.values()), sizes
    assert {name: n for name, n in sizes.items() if n > MAX_METHODS} == {}


def test_the_store_holds_one_part_per_role():
    parts = {f.name: f.type for f in dataclasses.fields(bot.store.Store)}
    assert sorted(parts.values()) == sorted(_roles())
