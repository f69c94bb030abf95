"""A scripted Claude for shared-thread end-to-end tests, behind the Messages API stand-in, and readers of the
requests it receives: the member lines with their speaker labels, the engine's note.

The model redirects every request that mentions a bomb, ends the thread for abuse once the warning came in
an earlier turn, and answers everything else; it reads the member's words inside the newest speaker label.
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.anthropic_standin import Reply, reply, tool_use

LABEL = re.compile(r'<member name="([^"<>\n]*)" id="([^"<>\n]*)">(.*)</member>', re.DOTALL)
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _texts(message: dict[str, Any]) -> list[str]:
    content = message["content"]
    blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
    return [b["text"] for b in blocks if b.get("type") == "text"]


def member_lines(body: dict[str, Any]) -> list[tuple[str, str, str] | str]:
    """Every member line of a request, oldest first: (name, id, words) when labelled, else the raw text."""
    out: list[tuple[str, str, str] | str] = []
    for message in body["messages"]:
        if message["role"] != "user":
            continue
        for text in _texts(message):
            if text.startswith("<thread_state>"):
                continue
            match = LABEL.fullmatch(text)
            out.append((match[1], match[2], match[3]) if match else text)
    return out


def note(body: dict[str, Any]) -> str:
    texts = _texts(body["messages"][-1])
    return texts[-1] if texts else ""


def newest_words(body: dict[str, Any]) -> str | None:
    """The newest member's words (None after tool results)."""
    last = body["messages"][-1]
    if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"]):
        return None
    texts = [t for t in _texts(last) if not t.startswith("<thread_state>")]
    words = texts[-1] if texts else ""
    match = LABEL.fullmatch(words)
    return match[3] if match else words


def responder(body: dict[str, Any]) -> Reply:
    words = newest_words(body)
    if words is None:
        return reply("Let's talk about something else.")
    if "bomb" in words.lower():
        if "warning_posted=yes (in an earlier turn)" in note(body):
            return reply(tool_use("end_conversation", {"reason": "persistent_abuse", "category": "weapons_of_mass_harm",
                                                       "summary": "Kept asking for bomb instructions."}))
        return reply("I can't help with that.", tool_use("record_redirection", {
            "category": "weapons_of_mass_harm", "note": "declined bomb instructions"}))
    return reply(f"Happy to help with that: {words[:40]}")
