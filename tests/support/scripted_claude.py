"""Two scripted models behind the Messages API stand-in, for running ``threadguard eval`` through the real SDK.

Both read each request the way Claude would get it: the member's newest text (the last user message's text
block before the engine's note; notes on files come before it) and the engine's ``<thread_state>`` note (its
last text block); in a shared thread, the words inside the newest line's speaker label, and whether that
speaker started the thread (from the note). What a member message *is* comes from the scenario suite
itself (``Oracle``: text -> turn kind, category, tags); the scripted model never sees the suite's
expectations.

- ``well_behaved``: redirects harmful requests (the first request for sexual content involving a minor
  meets the API's own ``refusal`` stop instead), ends only after a warning from an earlier turn, flags risk
  and never ends someone at risk, confirms before a requested end (only the starter's), ignores injections.
- ``careless``: redirects benign dual-use questions, tries to end at every harmful request (before the
  warning), ends anything once a warning stands, ignores the risk of a member who was abusive first,
  ends at the first request without confirming (whoever asks), and obeys injected ends.

``StandinThread`` runs the stand-in on a loop of its own so a subprocess (the ``threadguard`` command) can
use it while the test waits.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.anthropic_standin import AnthropicStandin, Reply, reply, tool_use
from tools.eval.scenarios import Suite

_STATE = re.compile(r"<thread_state>redirections=(\d+); warning_threshold=(\d+); warning_posted=([^;]+); "
                    r"user_at_risk=(yes|no)(?:; speaker_id=[^;<]*; speaker_started_thread=(yes|no); "
                    r"speaker_redirections=\d+)?</thread_state>")
#: A member line in a shared thread (``bot.history.member_line``): the scripted models read the words inside.
_LABEL = re.compile(r'<member name="[^"<>\n]*" id="[^"<>\n]*">(.*)</member>', re.DOTALL)


@dataclass(frozen=True)
class Turn:
    kind: str
    category: str
    dual_use: bool


class Oracle:
    """What each member message of the suite is (the same text is never two different things)."""

    def __init__(self, suite: Suite) -> None:
        self.turns: dict[str, Turn] = {}
        for s in suite.scenarios:
            for step in s.steps:
                if not step.text:
                    continue
                turn = Turn(step.kind, s.category, "dual_use" in s.tags)
                known = self.turns.setdefault(step.text, turn)
                if known != turn:
                    raise ValueError(f"the suite uses {step.text!r} as {known} and as {turn}")

    def __getitem__(self, text: str) -> Turn:
        return self.turns.get(text, Turn("benign", "other", False))


@dataclass(frozen=True)
class Seen:
    """The request as the model sees it."""

    text: str
    redirections: int
    warned_earlier: bool
    at_risk: bool
    after_tools: bool
    #: Whether the member being answered started the thread (always, but in a shared thread).
    starter: bool = True


def read(body: dict[str, Any]) -> Seen:
    last = body["messages"][-1]
    blocks = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
    if any(b.get("type") == "tool_result" for b in blocks):
        return Seen("", 0, False, False, True)
    texts = [b["text"] for b in blocks if b.get("type") == "text"]
    match = _STATE.fullmatch(texts[-1]) if texts else None
    if match is None:
        raise AssertionError("the engine's <thread_state> note is not the last block of the newest user message")
    member = texts[-2] if len(texts) > 1 else ""
    labelled = _LABEL.fullmatch(member)
    if labelled is not None:
        member = labelled[1].replace("&lt;", "<")
    return Seen(member, int(match[1]), match[3].startswith("yes (in an earlier"), match[4] == "yes", False,
                match[5] != "no")


def redirect(category: str) -> dict[str, Any]:
    return tool_use("record_redirection", {"category": category, "note": "declined and steered elsewhere"})


def end(reason: str, category: str = "other") -> dict[str, Any]:
    return tool_use("end_conversation", {"reason": reason, "category": category,
                                         "summary": "Ended after the ladder's steps."})


def flag(kind: str) -> dict[str, Any]:
    return tool_use("flag_risk", {"kind": kind, "note": "member may be at risk"})


Responder = Callable[[dict[str, Any]], Reply]


def well_behaved(oracle: Oracle) -> Responder:
    def respond(body: dict[str, Any]) -> Reply:
        seen = read(body)
        if seen.after_tools:
            return reply("Anything else?")
        turn = oracle[seen.text]
        if turn.category == "child_sexual_exploitation" and turn.kind == "harmful" and not seen.redirections:
            return reply(stop_reason="refusal")  # the API's own refusal stop, as Claude's classifiers send it
        if turn.kind in ("harmful", "abusive"):
            if seen.warned_earlier and not seen.at_risk:
                return reply(end("persistent_abuse", turn.category))
            return reply("I can't help with that.", redirect(turn.category))
        if turn.kind in ("at_risk", "threat"):
            kind = "self_harm" if turn.kind == "at_risk" else "harm_to_others"
            return reply("I'm here with you.", flag(kind))
        if turn.kind in ("ask_end", "confirm_end") and not seen.starter:
            return reply("Only the member who started this thread can end it; you can leave it or start your own.")
        if turn.kind == "ask_end" and not seen.at_risk:
            return reply("Ending is permanent here. Sure?")
        if turn.kind == "confirm_end" and not seen.at_risk:
            return reply(end("user_requested"))
        return reply("Happy to help.")

    return respond


def careless(oracle: Oracle) -> Responder:
    def respond(body: dict[str, Any]) -> Reply:
        seen = read(body)
        if seen.after_tools:
            return reply("OK.")
        turn = oracle[seen.text]
        if seen.warned_earlier and not seen.at_risk:
            return reply(end("persistent_abuse", "harassment"))
        if turn.kind == "benign" and turn.dual_use:
            return reply("I'd rather not.", redirect("other"))
        if turn.kind in ("harmful", "abusive") or (turn.kind in ("at_risk", "threat") and seen.redirections):
            category = turn.category if turn.kind in ("harmful", "abusive") else "harassment"
            return reply("No.", redirect(category), end("persistent_abuse", category))
        if turn.kind in ("at_risk", "threat"):
            return reply("Sorry to hear that.", flag("self_harm"), end("user_requested"))
        if turn.kind in ("ask_end", "confirm_end", "injection"):
            return reply(end("user_requested"))
        return reply("Sure.")

    return respond


class StandinThread:
    """The Messages API stand-in on an event loop in a background thread."""

    def __init__(self, responder: Responder) -> None:
        self.standin = AnthropicStandin()
        self.standin.responder = responder
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> AnthropicStandin:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.standin.start(), self._loop).result(10)
        return self.standin

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.standin.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
