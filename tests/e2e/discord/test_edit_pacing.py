"""Streamed answers under Discord's edit limit (5 edits per 5 s per channel, enforced by the stand-in):
the growing text of many answers in one channel gives way, every answer's last text is shown complete,
once, and soon after its last words; and a turn is over before its last edit, so the next thread's turn
need not wait for the channel's budget."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from adapters.discord.app import DiscordBot
from adapters.discord.pacing import EDITS_PER_WINDOW, WINDOW_SECONDS, EditPacer
from adapters.discord.replies import MESSAGE_LIMIT
from adapters.discord.surface import AnswerMessage
from adapters.text import split_text
from bot.bootstrap import Runtime
from bot.types import Case, Outcome, Reply, ReplyKind, ThreadRef, ThreadStatus
from tests.e2e.discord.conftest import CountingModel, say
from tests.support.discord_standin import DiscordStandin

pytestmark = pytest.mark.timeout(90)

STREAMS = 8
DELTA_EVERY = 0.1  # seconds between two pieces of a model's text
LAST_WORDS_APART = 1.25  # the streams end one after another, this far apart
#: A final waits for no intermediate: at worst for the oldest edit of a full window to leave it (the
#: intermediates keep their edits about ``WINDOW_SECONDS / EDITS_PER_WINDOW`` apart), plus a loaded machine.
FINAL_WITHIN = 2.0


async def _stream(surface_answer: AnswerMessage, bot: DiscordBot, ref: ThreadRef, index: int,
                  ) -> tuple[str, float, float]:
    """One model writing its answer for ``2 + index * LAST_WORDS_APART`` seconds, then the turn's outcome
    carried out as ``DiscordSink.deliver`` does. Returns the text, when its last words came, and how long
    carrying out the outcome took."""
    pieces = int((2.0 + index * LAST_WORDS_APART) / DELTA_EVERY)
    words = [f"s{index}w{k:03d} and some more " for k in range(pieces)]  # 21 characters a piece
    for word in words:
        await surface_answer(word)
        await asyncio.sleep(DELTA_EVERY)
    last_words = time.monotonic()
    text = "".join(words)
    outcome = Outcome(ref, replies=[Reply(ReplyKind.ANSWER, text)], streamed=True)
    try:
        await bot.conversations.delivery.outcome(outcome, "member", surface_answer)
    finally:
        await surface_answer.done()
    return text, last_words, time.monotonic() - last_words


def _shown_at(standin: DiscordStandin, thread_id: str, piece: str) -> float:
    """When Discord first received a write that shows ``piece`` (the answer's last part)."""
    return min(c.at for c in standin.calls if c.status == 200 and c.path.startswith(f"/channels/{thread_id}/messages")
               and (c.json or {}).get("content") == piece)


async def test_many_answers_in_one_channel_show_their_last_text_first(
        bot: DiscordBot, standin: DiscordStandin) -> None:
    opening = await say(standin, standin.general_id, "hello there", mention=True)
    thread_id = str(opening["id"])
    ref = ThreadRef("discord", standin.guild_id, standin.general_id, thread_id)
    standin.limit_edits(EDITS_PER_WINDOW, WINDOW_SECONDS)
    surface = bot.conversations.surface
    answers = [surface.answer(ref, interval=bot.settings.stream_edit_interval, delay=60.0) for _ in range(STREAMS)]
    before = len(standin.calls)

    results = await asyncio.gather(*(_stream(answer, bot, ref, i) for i, answer in enumerate(answers)))
    await standin.wait_until(lambda: surface.pending == 0, timeout=3 * WINDOW_SECONDS, what="the last edits")

    texts = standin.bot_texts(thread_id)
    late, handled = [], []
    for answer, (text, last_words, took) in zip(answers, results, strict=True):
        parts = split_text(text, MESSAGE_LIMIT)
        shown = [standin.messages[str(m.id)]["content"] for m in answer.message.messages]
        assert shown == parts  # complete, in as many messages as it needs
        assert all(texts.count(part) == 1 for part in parts)  # and nothing of it shown twice
        late.append(_shown_at(standin, thread_id, parts[-1]) - last_words)
        handled.append(took)
    assert len(answers[-1].message.messages) == 2  # the longest answer went on in a second message

    edits = [c for c in standin.calls[before:] if c.method == "PATCH" and c.path.startswith(f"/channels/{thread_id}/")]
    limited = [c for c in edits if c.status == 429]
    wanted = sum(len(text) // 21 for text, _, _ in results)  # a text piece each: what unpaced edits would be
    print(f"\n{STREAMS} answers in one channel: last text shown p50 {statistics.median(late):.2f} s, "
          f"max {max(late):.2f} s after the last words; {len(edits)} edits for {wanted} text pieces, "
          f"{surface.pacer.skipped} skipped, {len(limited)} answered 429; outcome carried out in "
          f"max {max(handled):.2f} s")
    assert limited == []
    assert max(late) <= FINAL_WITHIN, late
    assert max(handled) < 1.0  # the turn's part: the messages stand, the last edit follows on its own


async def test_notices_follow_the_answers_messages_and_the_thread_closes_after_its_last_edit(
        bot: DiscordBot, standin: DiscordStandin) -> None:
    opening = await say(standin, standin.general_id, "hello there", mention=True)
    thread_id = str(opening["id"])
    ref = ThreadRef("discord", standin.guild_id, standin.general_id, thread_id)
    standin.limit_edits(EDITS_PER_WINDOW, WINDOW_SECONDS)
    surface = bot.conversations.surface
    answer = surface.answer(ref, interval=bot.settings.stream_edit_interval, delay=60.0)
    before = len(standin.calls)
    # other answers spend the channel's budget: this one's first part waits for it to be finished, and
    # its second part to be posted, when the notices are due
    spending = [asyncio.create_task(_spend(surface.pacer, int(thread_id))) for _ in range(EDITS_PER_WINDOW)]
    text = "".join(f"part of a long answer {k:03d}. " for k in range(85))  # about 2,300 characters
    for i in range(0, len(text), 100):
        await answer(text[i:i + 100])
        await asyncio.sleep(0.02)
    case = Case(1, standin.guild_id, "discord", ref.key, standin.general_id)
    replies = [Reply(ReplyKind.ANSWER, text), Reply(ReplyKind.CRISIS, "Crisis resources."),
               Reply(ReplyKind.FREEZE_NOTICE, "This conversation has ended.")]
    outcome = Outcome(ref, replies=replies, status=ThreadStatus.ENDED, case=case, streamed=True)
    try:
        await bot.conversations.delivery.outcome(outcome, "member", answer)
    finally:
        await answer.done()
    await asyncio.gather(*spending)
    await standin.settle()

    parts = split_text(text, MESSAGE_LIMIT)
    assert standin.bot_texts(thread_id)[1:] == [*parts, "Crisis resources.", "This conversation has ended."]
    calls = standin.calls[before:]
    lock = next(c for c in calls if c.method == "PATCH" and c.path == f"/channels/{thread_id}")
    assert lock.json["locked"] and lock.json["archived"]
    assert _shown_at(standin, thread_id, parts[-1]) < lock.at  # an archived thread's message cannot be edited
    assert not [c for c in calls if c.status >= 400]


@pytest.fixture
def runtime(runtime: Runtime) -> Runtime:
    """One thread at a time in this process: a turn still holding its slot keeps the next thread waiting."""
    runtime.pipeline.limits = runtime.pipeline.limits.model_copy(update={"max_active_threads": 1})
    return runtime


async def _spend(pacer: EditPacer, channel: int) -> None:
    await pacer.wait_edit(channel)
    pacer.edited(channel)


async def test_a_turn_is_over_before_its_last_edit_and_the_next_thread_goes_on(
        bot: DiscordBot, runtime: Runtime, standin: DiscordStandin, model: CountingModel) -> None:
    first = str((await say(standin, standin.general_id, "hello there", mention=True))["id"])
    second = str((await say(standin, standin.general_id, "hello again", mention=True))["id"])
    standin.limit_edits(EDITS_PER_WINDOW, WINDOW_SECONDS)
    answer = " ".join(f"word{k}" for k in range(60))
    model.script, model.chunk_delay = [answer], 0.03
    await standin.post(first, "tell me more")
    await standin.wait_for("POST", rf"/channels/{first}/messages",
                           where=lambda c: (c.json or {}).get("content", "").startswith("word0"))
    pacer = bot.conversations.surface.pacer
    # other answers in the first thread spend its budget: their edits go ahead of this answer's last one
    spending = [asyncio.create_task(_spend(pacer, int(first))) for _ in range(EDITS_PER_WINDOW)]
    spent = time.monotonic()
    await standin.post(second, "and here?")  # waits in Redis while the first thread holds the one slot

    await standin.wait_until(lambda: standin.bot_texts(first)[-1] == answer, timeout=3 * WINDOW_SECONDS,
                             what="the first thread's last edit")
    final_at = _shown_at(standin, first, answer)
    before_it = [c.at for c in standin.find("POST", rf"/channels/{second}/messages", status=200)
                 if spent < c.at < final_at]
    await asyncio.gather(*spending)
    await standin.settle()
    print(f"\nlast edit {final_at - spent:.2f} s after the channel's budget was spent; the next thread "
          f"answered {min(before_it, default=final_at) - spent:.2f} s after it")
    assert final_at - spent >= WINDOW_SECONDS - 0.5  # the last edit did wait for the channel's budget
    assert before_it, "the next thread waited for the first thread's last edit"  # its turn did not wait
    assert standin.bot_texts(second)[-1].endswith("“and here?”")
    assert model.calls == 4
