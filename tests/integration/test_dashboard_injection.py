"""Everything a model or a member can write reaches every dashboard page and export inert.

Payloads go in through the real engine (member names and messages; the model's answer, redirection and
risk notes and the end summary), through the dashboard's own forms (moderator notes, the reason for a
mistaken ending) and, for the fields the engine normalises before they are stored (category, reason,
jump link, thread and branch keys), through a case filed as it could be read back from older data.
Each field carries a tag of its own, so a failure names the field and the page. The pages are served by
the real aiohttp application on a real redis-server; the HTML is parsed, not searched for one string.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.dashboard.app import build_app
from adapters.dashboard.auth import Accounts
from bot.bootstrap import build_runtime
from bot.model import TextBlock
from bot.types import Author, Case, Entry, EntryKind, IncomingMessage, Participant, ThreadRef, ThreadStatus
from config.communities import Communities, CommunityConfig
from config.dashboard import DashboardSettings
from config.settings import AnthropicSettings, RedisSettings, Settings
from tests.integration.scripted_model import ScriptedModel

SECRET = "injection-test-session-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
COMMUNITY = "guild-x"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def payload(field: str) -> str:
    """Markup that would become an element and an event handler if it were not escaped, per field.

    It opens with a quote to break out of an attribute too, and carries ``{{ }}`` (not evaluated) and
    a line separator (must not split a JSON line)."""
    return (f'"\'><inj-{field} onmouseover="alert(\'{field}\')">{field}</inj-{field}>\u2028'
            f'<script>alert("{field}")</script>{{{{7*7}}}}')


def tagged(field: str) -> str:
    return f"inj-{field}"


MEMBER = Author("u-member", payload("member_name"))


class Markup(HTMLParser):
    """The elements and attributes a browser would build from a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.handlers: list[tuple[str, str]] = []
        self.scripts = 0
        self.text: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "script":
            self.scripts += 1
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name in ("href", "src", "action", "formaction") and value:
                self.hrefs.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Markup:
    markup = Markup()
    markup.feed(html)
    return markup


def assert_inert(html: str, where: str, shown: tuple[str, ...]) -> None:
    markup = parse(html)
    injected = [t for t in markup.tags if t.startswith("inj-")]
    assert injected == [], f"{where}: payload became markup: {injected}"
    assert markup.scripts == 0, f"{where}: a <script> element"
    assert markup.handlers == [], f"{where}: event handler attributes {markup.handlers}"
    for href in markup.hrefs:
        assert not href.strip().lower().startswith(("javascript:", "data:", "vbscript:")), f"{where}: {href}"
    text = "".join(markup.text)
    for name in shown:  # the field did reach the page, as text
        assert f"<{tagged(name)}" in text, f"{where}: {name} is not shown as text"


def _model() -> ScriptedModel:
    model = ScriptedModel(lambda _text: [])

    def decide(text: str):
        if "redirect" in text:
            return [TextBlock(payload("answer")),
                    model.tool("record_redirection", category="harassment", note=payload("redirection_note"))]
        if "risk" in text:
            return [TextBlock("I hear you."),
                    model.tool("flag_risk", kind="harm_to_others", note=payload("risk_note"))]
        if "end" in text:
            return [model.tool("end_conversation", reason="user_requested", category="Harassment",
                               summary=payload("summary"))]
        return [TextBlock("Hello.")]

    model.decide = decide
    return model


def _older_case(prefix: str) -> Case:
    """A case whose every free-text field holds a payload, as older or imported data could."""
    def p(field: str) -> str:
        return prefix + payload(field)

    entries = [Entry(EntryKind.USER, p("old_text"), author_id=p("old_author_id"),
                     author_name=p("old_author_name"), category=p("old_entry_category")),
               Entry(EntryKind.REDIRECTION, p("old_note"), category=p("old_redirect_category"))]
    return Case(
        0, COMMUNITY, "discord", p("thread"), p("channel"), action="end",
        reason=p("reason"), category=p("category"), summary=p("old_summary"),
        ended_at="2026-11-30T10:00:00+00:00", ended_by=p("ended_by"),
        participants=[Participant(p("participant_id"), p("participant_name"))],
        transcript=entries, jump_url=prefix + "javascript:alert(document.cookie)//" + payload("jump_url"),
        branch_of=p("branch_of"), branches=[p("branch")], moderator=p("moderator"),
        note=p("old_case_note"), case_ref=f"imported:{prefix!r}")


async def _csrf(client: TestClient, path: str) -> str:
    html = await (await client.get(path)).text()
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


@dataclass
class Seeded:
    client: TestClient
    ended: int = 0      # ended by the model: member text and name, answer, redirection note, summary
    risk: int = 0       # a risk flag with a payload note, then the member's own end
    note: int = 0       # a moderator's note with a payload, filed through the dashboard form
    mistaken: int = 0   # a mistaken-ending reason with a payload, through the form
    older: dict[str, int] = field(default_factory=dict)  # prefix -> a case with payloads everywhere


@pytest.fixture
async def seeded(redis_client):
    rt = build_runtime(Settings(anthropic=AnthropicSettings(api_key=None), redis=RedisSettings(url=None)),
                       model=_model(), redis=redis_client,
                       communities=Communities(CommunityConfig(threshold=5, crisis_resources="Call 988.")))
    say = rt.member_actions.handle_message
    thread = ThreadRef("discord", COMMUNITY, "c1", "t-ended")
    for n, text in enumerate([payload("message_text"), "redirect me", "please end this"]):
        outcome = await say(IncomingMessage(thread, MEMBER, text, message_id=f"m{n}",
                                            jump_url="https://discord.com/channels/1/2"))
    assert outcome.status is ThreadStatus.ENDED and outcome.case is not None
    risky = ThreadRef("discord", COMMUNITY, "c1", "t-risk")
    await say(IncomingMessage(risky, MEMBER, "risk", message_id="r1"))
    risk = await rt.member_actions.end_by_user(risky, MEMBER)
    assert risk.case is not None
    older = {prefix: (await rt.store.cases.file_action(_older_case(prefix))).case_id
             for prefix in ("", *FORMULA_STARTS)}
    accounts = Accounts(redis_client, SECRET.encode())
    await accounts.add("root", PASSWORD, [], admin=True)
    app = build_app(rt, DashboardSettings(session_secret=SECRET, cookie_secure=False, page_size=50))
    async with TestClient(TestServer(app)) as client:
        token = await _csrf(client, "/login")
        signed_in = await client.post("/login", data={"name": "root", "password": PASSWORD, "csrf": token},
                                      allow_redirects=False)
        assert signed_in.status == 303
        case_path = f"/cases/{COMMUNITY}/{outcome.case.case_id}"
        token = await _csrf(client, case_path)
        for action, what in (("note", "moderator_note"), ("mistaken", "mistaken_reason")):
            done = await client.post(f"{case_path}/{action}", data={"csrf": token, "note": payload(what)},
                                     allow_redirects=False)
            assert done.status == 303
        note, mistaken = (await rt.cases.get(COMMUNITY, outcome.case.case_id)).actions
        yield Seeded(client, outcome.case.case_id, risk.case.case_id, note, mistaken, older)
    await rt.aclose()


ENGINE_FIELDS = ("member_name", "message_text", "answer", "redirection_note", "summary")
OLDER_FIELDS = ("old_text", "old_author_name", "old_entry_category", "old_redirect_category", "old_note",
                "thread", "reason", "category", "old_summary", "ended_by", "participant_id",
                "participant_name", "jump_url", "branch_of", "branch", "moderator", "old_case_note")


async def _page(s: Seeded, path: str, **params: str) -> str:
    response = await s.client.get(path, params=params, allow_redirects=False)
    assert response.status == 200, path
    return await response.text()


async def test_every_written_field_is_inert_on_the_case_pages(seeded):
    s = seeded
    assert_inert(await _page(s, f"/cases/{COMMUNITY}/{s.ended}"), "ended case",
                 (*ENGINE_FIELDS, "moderator_note", "mistaken_reason"))
    assert_inert(await _page(s, f"/cases/{COMMUNITY}/{s.risk}"), "risk case", ("member_name", "risk_note"))
    assert_inert(await _page(s, f"/cases/{COMMUNITY}/{s.note}"), "note case", ("moderator_note",))
    assert_inert(await _page(s, f"/cases/{COMMUNITY}/{s.mistaken}"), "mistaken case", ("mistaken_reason",))
    for prefix, number in s.older.items():
        html = await _page(s, f"/cases/{COMMUNITY}/{number}")
        assert_inert(html, f"older case {prefix!r}", OLDER_FIELDS)
        assert 'id="jump-link"' not in html  # a javascript: jump link is text, never a link


async def test_every_written_field_is_inert_on_the_list_and_the_chart(seeded):
    s = seeded
    assert_inert(await _page(s, "/cases", review="all"), "case list",
                 ("member_name", "summary", "old_summary", "participant_name", "category", "reason"))
    assert_inert(await _page(s, "/chart"), "chart", ())
    # the filters echo what the moderator typed: payloads in the query string stay text
    assert_inert(await _page(s, "/cases", participant=payload("filter")[:100]), "participant filter", ())
    assert_inert(await _page(s, "/cases", thread=payload("thread_filter")), "thread filter", ("thread_filter",))
    assert_inert(await _page(s, "/chart", participant=payload("filter")[:100], since="2026-01-01"),
                 "chart filter", ())
    response = await s.client.get("/cases", params={"community": payload("community")[:100]})
    assert_inert(await response.text(), "unknown community", ())


async def test_the_csv_export_neutralises_every_cell_a_spreadsheet_would_run(seeded):
    rows = list(csv.DictReader(io.StringIO(await _page(seeded, "/export.csv", review="all", actions="1"))))
    assert len(rows) == 4 + len(seeded.older)
    for row in rows:
        for name, cell in row.items():
            assert not cell.startswith(FORMULA_STARTS), (row["case_id"], name, cell)
    by_id = {int(r["case_id"]): r for r in rows}
    for prefix, number in seeded.older.items():
        row = by_id[number]
        quote = "'" if prefix else ""
        # the value survives behind the quote, in every column a user or the model can write
        for name, value in (("summary", "old_summary"), ("note", "old_case_note"), ("category", "category"),
                            ("reason", "reason"), ("moderator", "moderator"), ("ended_by", "ended_by"),
                            ("branch_of", "branch_of"), ("branches", "branch"), ("thread", "thread"),
                            ("channel", "channel")):
            assert row[name] == quote + prefix + payload(value), (prefix, name)
        assert row["participants"].startswith(quote + prefix + payload("participant_name"))
        assert row["jump_url"].startswith(quote + prefix + "javascript:")


async def test_the_jsonl_export_is_one_valid_line_per_case_whatever_was_written(seeded):
    s = seeded
    body = await _page(s, "/export.jsonl", review="all", actions="1")
    # a line or paragraph separator inside a value must not split a line, for any line reader
    assert len(body.splitlines()) == body.count("\n") == 4 + len(s.older)
    cases = {c["case_id"]: c for c in (json.loads(line) for line in body.splitlines())}
    assert cases[s.ended]["summary"] == payload("summary")
    assert cases[s.older[""]]["transcript"][0]["author_name"] == payload("old_author_name")
    assert cases[s.older["\r"]]["summary"] == "\r" + payload("old_summary")
