"""The scenario suite: one TOML file per class under ``evals/``, loaded and checked into plain values.

A scenario is a scripted member side (what the member sends, turn by turn) plus expectations on the
engine's own events (redirections, warning, risk flag, crisis post, end and its reason), never on the
model's wording. Each member turn carries a ``kind`` (what the message is: a benign question, a harmful
request, a sign of risk, an injection...). Kinds are scenario data for authors and for the scorecard;
they are never sent to the model. A shared-thread scenario names the member who acts in each turn
(``member``; ``a`` by default, the member who starts the thread).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

#: What a member message is. ``at_risk``: signs the member may harm themselves; ``threat``: may harm others.
TURN_KINDS = ("benign", "harmful", "abusive", "at_risk", "threat", "ask_end", "confirm_end", "decline_end",
              "injection")
HARMFUL_KINDS = frozenset({"harmful", "abusive"})
RISK_KINDS = frozenset({"at_risk", "threat"})
CLASSES = ("benign", "persistent", "at_risk", "user_end", "injection", "change_course", "branch", "shared")
CATEGORIES = ("child_sexual_exploitation", "violent_extremism", "weapons_of_mass_harm", "violent_threats",
              "harassment", "hate", "self_harm", "other")
ACTIONS = ("say", "edit", "end_command")
#: The member who starts the conversation (and the only one in every scenario that names no other).
FIRST_MEMBER = "a"
_MEMBER = re.compile(r"[a-z0-9_-]{1,16}")


class SuiteError(Exception):
    """The suite cannot be loaded; the message names the file and the scenario."""


@dataclass(frozen=True)
class FileSpec:
    """A file the member attaches, made when the turn is sent (``tools.eval.files``): an image showing
    ``image_text``, a text file holding ``text``, ``size`` bytes of filler (types the bot does not read, or a
    file over the size limit), or a decompression ``bomb``."""

    name: str
    text: str | None = None
    image_text: str | None = None
    size: int = 0
    bomb: bool = False


@dataclass(frozen=True)
class Step:
    """One thing the member does: send a message, edit their Nth message (branch), or use the end command."""

    action: str
    text: str = ""
    kind: str = "benign"
    #: For ``edit``: which of the member's messages in the current conversation (1-based).
    edit: int = 0
    #: Files sent with the message.
    files: tuple[FileSpec, ...] = ()
    #: Who does it (shared threads): a short label, ``a`` for the member who starts the thread.
    member: str = FIRST_MEMBER


@dataclass(frozen=True)
class Expect:
    """Expectations on the engine's events. ``None`` means: not checked."""

    ended: bool | None = None
    end_reason: str | None = None
    warned: bool | None = None
    redirections_min: int | None = None
    redirections_max: int | None = None
    risk_flagged: bool | None = None
    crisis_posts: int | None = None
    #: Persistent threads: the end comes at most this many member turns after the warning's turn.
    end_within_turns_after_warning: int | None = None
    #: A user-requested end only once the member confirmed (a ``confirm_end`` turn came first).
    confirmed_before_end: bool | None = None
    #: Every harmful or abusive member turn gets a redirection, an end or an API refusal.
    redirect_harmful: bool | None = None
    #: Branch scenarios: the branch starts with the ladder its history held, and ends again.
    branch_carries_ladder: bool | None = None
    #: Shared threads: exactly these members' requests were redirected.
    redirected_members: tuple[str, ...] | None = None
    #: Shared threads: the warning names exactly these members.
    warning_to: tuple[str, ...] | None = None
    #: Shared threads: the crisis resources are addressed to exactly these members.
    crisis_to: tuple[str, ...] | None = None
    #: Shared threads: the end counts against exactly these members' records.
    counted_against: tuple[str, ...] | None = None
    #: Shared threads: after the end, exactly these members are offered a conversation of their own.
    offered_own: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Scenario:
    id: str
    cls: str
    title: str
    steps: tuple[Step, ...]
    expect: Expect
    lang: str = "en"
    category: str = "other"
    tags: tuple[str, ...] = ()
    #: Keep sending the ``say`` steps in a loop until the conversation ends or ``max_turns`` is reached.
    cycle: bool = False
    max_turns: int = 0
    source: str = ""

    @property
    def member_at_risk(self) -> bool:
        return any(s.kind in RISK_KINDS for s in self.steps)

    @property
    def has_branch(self) -> bool:
        return any(s.action == "edit" for s in self.steps)

    @property
    def members(self) -> tuple[str, ...]:
        """The members who take part, in the order they first act."""
        return tuple(dict.fromkeys(s.member for s in self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "class": self.cls, "title": self.title, "lang": self.lang,
                "category": self.category, "tags": list(self.tags), "member_at_risk": self.member_at_risk,
                "source": self.source}


@dataclass
class Suite:
    scenarios: list[Scenario] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    digest: str = ""

    def by_class(self) -> dict[str, list[Scenario]]:
        found: dict[str, list[Scenario]] = {}
        for s in self.scenarios:
            found.setdefault(s.cls, []).append(s)
        return found


def default_suite_dir() -> Path:
    """``evals/`` of this checkout (next to the package), else ``./evals``."""
    here = Path(__file__).resolve().parents[2] / "evals"
    return here if here.is_dir() else Path("evals")


def suite_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths or [default_suite_dir()]:
        if path.is_dir():
            found.extend(sorted(path.glob("*.toml")))
        elif path.is_file():
            found.append(path)
        else:
            raise SuiteError(f"{path}: no such file or directory")
    if not found:
        raise SuiteError(f"no scenario files (*.toml) in {', '.join(str(p) for p in paths)}")
    return found


def load_suite(paths: list[Path], only: set[str] | None = None) -> Suite:
    """Every scenario of the given files and directories; ``only`` keeps the named classes or ids."""
    suite = Suite()
    hasher = hashlib.sha256()
    seen: dict[str, str] = {}
    for path in suite_files(paths):
        raw = path.read_bytes()
        hasher.update(raw)
        suite.files.append(str(path))
        for scenario in _load_file(path, raw):
            if scenario.id in seen:
                raise SuiteError(f"{path}: scenario id {scenario.id!r} is also used in {seen[scenario.id]}")
            seen[scenario.id] = str(path)
            if only and scenario.cls not in only and scenario.id not in only:
                continue
            suite.scenarios.append(scenario)
    suite.digest = hasher.hexdigest()[:16]
    if not suite.scenarios:
        raise SuiteError("the selection holds no scenario")
    return suite


def _load_file(path: Path, raw: bytes) -> list[Scenario]:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SuiteError(f"{path}: not valid TOML ({exc})") from exc
    cls = data.get("class")
    if cls not in CLASSES:
        raise SuiteError(f"{path}: 'class' must be one of {', '.join(CLASSES)}")
    defaults = data.get("defaults", {})
    items = data.get("scenario", [])
    if not isinstance(defaults, dict) or not isinstance(items, list) or not items:
        raise SuiteError(f"{path}: needs [defaults] (optional) and at least one [[scenario]]")
    return [_scenario(path, cls, defaults, item, i) for i, item in enumerate(items, 1)]


def _scenario(path: Path, cls: str, defaults: dict[str, Any], item: Any, number: int) -> Scenario:
    where = f"{path} scenario {number}"
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise SuiteError(f"{where}: every [[scenario]] needs an 'id'")
    where = f"{path} scenario {item['id']!r}"
    merged = {**{k: v for k, v in defaults.items() if k != "expect"}, **item}
    known = {"id", "title", "turns", "expect", "lang", "category", "tags", "cycle", "max_turns", "kind"}
    unknown = set(merged) - known
    if unknown:
        raise SuiteError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    kind = merged.get("kind", "benign")
    steps = tuple(_step(where, raw, kind) for raw in _as_list(where, merged.get("turns")))
    if not steps:
        raise SuiteError(f"{where}: 'turns' must list at least one member turn")
    category = merged.get("category", "other")
    if category not in CATEGORIES:
        raise SuiteError(f"{where}: category {category!r} is not one of {', '.join(CATEGORIES)}")
    says = sum(1 for s in steps if s.action != "end_command")
    max_turns = merged.get("max_turns", says)
    if not isinstance(max_turns, int) or max_turns < 1:
        raise SuiteError(f"{where}: 'max_turns' must be a positive integer")
    return Scenario(
        id=item["id"], cls=cls, title=str(merged.get("title", item["id"])), steps=steps,
        expect=_expect(where, {**defaults.get("expect", {}), **item.get("expect", {})}),
        lang=str(merged.get("lang", "en")), category=category,
        tags=tuple(str(t) for t in merged.get("tags", ())), cycle=bool(merged.get("cycle", False)),
        max_turns=max_turns, source=path.name)


def _as_list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise SuiteError(f"{where}: 'turns' must be a list")
    return value


def _step(where: str, raw: Any, default_kind: str) -> Step:
    if isinstance(raw, str):
        raw = {"say": raw}
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: a turn is a string or a table like {{ say = \"...\", kind = \"benign\" }}")
    kind = raw.get("kind", default_kind)
    if kind not in TURN_KINDS:
        raise SuiteError(f"{where}: turn kind {kind!r} is not one of {', '.join(TURN_KINDS)}")
    member = raw.get("member", FIRST_MEMBER)
    if not isinstance(member, str) or not _MEMBER.fullmatch(member):
        raise SuiteError(f"{where}: 'member' is a short label of lower-case letters and digits, like \"b\"")
    if raw.get("command") == "end":
        return Step("end_command", kind=kind, member=member)
    text = raw.get("say")
    if not isinstance(text, str) or not text.strip():
        raise SuiteError(f"{where}: every turn needs non-empty text in 'say' (or command = \"end\")")
    edit = raw.get("edit", 0)
    if not isinstance(edit, int) or edit < 0:
        raise SuiteError(f"{where}: 'edit' must be the number of one of the member's earlier messages")
    files = tuple(_file(where, f) for f in raw.get("files") or ())
    if edit and member != FIRST_MEMBER:
        raise SuiteError(f"{where}: only the first member edits their messages")
    return Step("edit" if edit else "say", text, kind, edit, files, member)


def _file(where: str, raw: Any) -> FileSpec:
    names = {f.name for f in fields(FileSpec)}
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw.keys() <= names:
        raise SuiteError(f"{where}: a file is a table with 'name' and one of text, image_text, size, bomb")
    return FileSpec(**raw)


def _expect(where: str, raw: Any) -> Expect:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: 'expect' must be a table")
    names = {f.name for f in fields(Expect)}
    unknown = set(raw) - names
    if unknown:
        raise SuiteError(f"{where}: unknown expectation(s) {', '.join(sorted(unknown))}")
    if raw.get("end_reason") not in (None, "persistent_abuse", "user_requested"):
        raise SuiteError(f"{where}: end_reason must be persistent_abuse or user_requested")
    for name in _MEMBER_LISTS:
        value = raw.get(name)
        if value is not None:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SuiteError(f"{where}: {name} is a list of member labels, like [\"b\"]")
            raw = {**raw, name: tuple(value)}
    return Expect(**raw)


_MEMBER_LISTS = ("redirected_members", "warning_to", "crisis_to", "counted_against", "offered_own")
