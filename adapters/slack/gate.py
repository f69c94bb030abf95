"""What Slack hands the bot, checked before any of it is used.

The HTTP events endpoint checks the request signature on the raw bytes before anything is decoded or
parsed: an unsigned, stale or forged request is refused (401) and a signed one that is not UTF-8 or not
parseable gets 400, each with one log line and no traceback, so whoever reaches the endpoint cannot make
the bot parse their bytes or fill its log. A signed event (over HTTP or Socket Mode) whose fields have the
wrong types, lack what the listeners read or hold text that cannot be stored (a lone surrogate) is
acknowledged and logged once: Slack would only send it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

#: Slack's own rule: a request signed more than five minutes ago is refused (replays).
MAX_AGE_SECONDS = 300
#: Deeper than this, a body is not one Slack sends (and parsing it would cost a deep recursion).
MAX_DEPTH = 64
#: Event fields the listeners read as strings.
_EVENT_STRINGS = ("type", "subtype", "channel", "channel_type", "user", "ts", "thread_ts", "text", "bot_id",
                  "event_ts", "team")
#: What every slash command carries (the listener answers through ``response_url``).
_COMMAND_FIELDS = ("command", "user_id", "channel_id", "team_id", "response_url")
_BODY_STRINGS = ("type", "team_id", "api_app_id", "event_id", "enterprise_id")


@dataclass(frozen=True)
class Refusal:
    """Why a request is not handed to the app, and the HTTP status it is answered with."""

    status: int
    reason: str


class RequestGate:
    """Checks one HTTP request of the events endpoint (``check``) before Bolt sees it."""

    def __init__(self, signing_secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._secret = signing_secret.encode()
        self._clock = clock

    def check(self, raw: bytes, headers: Mapping[str, str], content_type: str) -> Refusal | None:
        refused = self._signature(raw, headers)
        if refused is not None:
            return refused
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Refusal(400, "body is not UTF-8")
        try:
            body = _parse(text, content_type)
        except (ValueError, RecursionError):
            return Refusal(400, "body is not parseable")
        problem = unusable(body)
        return Refusal(200, problem) if problem else None

    def _signature(self, raw: bytes, headers: Mapping[str, str]) -> Refusal | None:
        stamp = headers.get("X-Slack-Request-Timestamp") or ""
        signature = headers.get("X-Slack-Signature") or ""
        if not stamp or not signature:
            return Refusal(401, "unsigned")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12:
            return Refusal(401, "malformed timestamp")
        if abs(self._clock() - int(stamp)) > MAX_AGE_SECONDS:
            return Refusal(401, "stale timestamp")
        expected = "v0=" + hmac.new(self._secret, b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            return Refusal(401, "bad signature")
        return None


def _parse(text: str, content_type: str) -> Any:
    """The body as Bolt will read it: JSON (events), or a form whose ``payload`` is JSON (interactions)."""
    if "application/x-www-form-urlencoded" in content_type:
        form = parse_qs(text, keep_blank_values=True, errors="strict")
        payload = form.get("payload")
        return json.loads(payload[0]) if payload else {k: v[0] for k, v in form.items()}
    return json.loads(text)


def unusable(body: Any) -> str | None:
    """Why a (signed or Socket Mode) body cannot be used, or ``None``. Checks what the listeners read."""
    if not isinstance(body, dict):
        return "not an object"
    problem = _bad_text(body)
    if problem:
        return problem
    for name in _BODY_STRINGS:
        if body.get(name) is not None and not isinstance(body[name], str):
            return f"{name} is not a string"
    if body.get("team") is not None and not isinstance(body["team"], dict):
        return "team is not an object"
    if "command" in body and not all(isinstance(body.get(k), str) and body[k] for k in _COMMAND_FIELDS):
        return "a command without its user, channel, team or response URL"
    if body.get("type") != "event_callback":
        return None
    event = body.get("event")
    if not isinstance(event, dict):
        return "event is not an object"
    return _bad_event(event)


def _bad_event(event: dict[str, Any]) -> str | None:
    if not isinstance(event.get("type"), str):
        return "event without a type"
    for name in _EVENT_STRINGS:
        if event.get(name) is not None and not isinstance(event[name], str):
            return f"event.{name} is not a string"
    if event["type"] in ("message", "app_mention") and not isinstance(event.get("channel"), str):
        return "event without a channel"
    spoken = event["type"] == "app_mention" or (event["type"] == "message" and event.get("subtype") is None
                                                and not event.get("bot_id"))
    if spoken and not (isinstance(event.get("ts"), str) and isinstance(event.get("user"), str)):
        return "a member's message without its user or ts"
    edited = event.get("message")
    if event.get("subtype") == "message_changed":
        if not isinstance(edited, dict):
            return "edit without its message"
        for name in ("user", "ts", "text", "thread_ts", "bot_id"):
            if edited.get(name) is not None and not isinstance(edited[name], str):
                return f"event.message.{name} is not a string"
    files = event.get("files")
    if files is not None and not (isinstance(files, list) and all(isinstance(f, dict) for f in files)):
        return "event.files is not a list of objects"
    return None


def _bad_text(body: Any) -> str | None:
    """Too deep, or a string (key or value) that is not valid Unicode text (a lone surrogate)."""
    stack: list[tuple[Any, int]] = [(body, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return "nested too deep"
        if isinstance(value, str):
            if not _encodable(value):
                return "a lone surrogate in its text"
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and not _encodable(k):
                    return "a lone surrogate in its text"
                stack.append((v, depth + 1))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
