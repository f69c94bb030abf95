"""The per-channel edit ledger of Discord's streamed answers (``adapters.discord.pacing``): intermediates
only from what can be spared now, finals first and woken by the window, never by polling."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.discord.pacing import EditPacer

pytestmark = pytest.mark.timeout(10)

LIMIT, PERIOD = 3, 0.3
SPACING = PERIOD / LIMIT


async def _spend(pacer: EditPacer, channel: int, n: int) -> None:
    for _ in range(n):
        await pacer.wait_edit(channel)
        pacer.edited(channel)


async def test_intermediates_are_spaced_and_leave_one_edit_for_a_final() -> None:
    pacer = EditPacer(LIMIT, PERIOD)
    assert pacer.try_edit(1)
    pacer.edited(1)
    assert not pacer.try_edit(1)  # too soon after the channel's last edit
    assert pacer.try_edit(2)  # another channel has its own budget
    await asyncio.sleep(SPACING + 0.01)
    assert pacer.try_edit(1)
    pacer.edited(1)
    await asyncio.sleep(SPACING + 0.01)
    assert not pacer.try_edit(1)  # the last free edit is a final's
    began = time.monotonic()
    await pacer.wait_edit(1)
    assert time.monotonic() - began < 0.05
    assert pacer.skipped == 2


async def test_a_waiting_final_goes_first_and_the_window_wakes_it() -> None:
    pacer = EditPacer(LIMIT, PERIOD)
    await _spend(pacer, 1, LIMIT)
    began = time.monotonic()
    final = asyncio.create_task(pacer.wait_edit(1))
    await asyncio.sleep(SPACING + 0.02)
    assert not final.done() and not pacer.try_edit(1)
    await final
    assert PERIOD - 0.02 <= time.monotonic() - began < PERIOD + 0.1  # when the oldest edit left the window
    pacer.edited(1)
    await asyncio.sleep(SPACING + 0.01)
    assert pacer.try_edit(1)  # the spent edits have left the window: intermediates go again


async def test_finals_are_served_in_order_and_a_cancelled_one_gives_up_its_place() -> None:
    pacer = EditPacer(LIMIT, PERIOD)
    await _spend(pacer, 1, LIMIT)
    order: list[str] = []

    async def final(name: str) -> None:
        await pacer.wait_edit(1)
        order.append(name)
        pacer.edited(1)

    first, gone, last = (asyncio.create_task(final(n)) for n in ("first", "gone", "last"))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.gather(first, last)
    assert order == ["first", "last"]
    assert gone.cancelled()
