"""Who takes part in a thread, and in which role: the starter, members whose requests were redirected, and
bystanders. Read from the thread's own log, so every process and every later reader (a case, a branch)
sees the same people.

Community threads are public: anyone in the channel may write in a thread the bot answers. The ladder
counts per thread, but its words are addressed: the warning names the members whose requests were
redirected, crisis resources the member who may be at risk; only the starter (or a moderator) ends a
shared thread by command, and a bystander may carry their part of an ended thread into a conversation of
their own.

A redirection belongs to the member whose line the turn answered: each turn answers one member message,
so the author of that turn's user line is the redirected member (entries written before redirections
carried their member are attributed that way too).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bot.types import Author, Entry, EntryKind, Participant
from bot.validation import is_invisible

#: A display name as the model and the notices see it: at most this many characters.
NAME_LIMIT = 64
#: What a member without a usable display name is called.
NO_NAME = "member"

STARTER = "starter"
REDIRECTED = "redirected"
BYSTANDER = "bystander"


def clean_name(name: str | None, limit: int = NAME_LIMIT) -> str:
    """A display name on one line: compatibility forms folded (NFKC), control, format (bidi, zero-width) and
    other invisible characters dropped, white space runs made one space, at most ``limit`` characters."""
    folded = unicodedata.normalize("NFKC", name or "")
    kept: list[str] = []
    for ch in folded:
        if ch == " " or not is_invisible(ch):
            kept.append(ch)
        elif ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp"):
            kept.append(" ")
    text = " ".join("".join(kept).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    return text or NO_NAME


@dataclass
class ThreadPeople:
    """The members of a thread as its log shows them (in order of their first line)."""

    names: dict[str, str] = field(default_factory=dict)
    starter: str | None = None
    #: Member id -> requests of theirs the model redirected.
    redirected: dict[str, int] = field(default_factory=dict)
    #: Member id -> risk flags raised on their lines.
    at_risk: dict[str, int] = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        """More than one member wrote in the thread."""
        return len(self.names) > 1

    def is_starter(self, member_id: str) -> bool:
        return self.starter is None or self.starter == member_id

    def bystanders(self) -> list[str]:
        """Members none of whose requests were redirected."""
        return [m for m in self.names if not self.redirected.get(m)]

    def participants(self) -> list[Participant]:
        """Every member with their role in the thread (what a case lists)."""
        return [Participant(m, name, role=_role(m == self.starter, self.redirected.get(m, 0)),
                            redirected=self.redirected.get(m, 0)) for m, name in self.names.items()]

    def with_turn(self, author: Author, entries: Iterable[Entry]) -> ThreadPeople:
        """These people once ``author``'s turn wrote ``entries`` (its redirections and risk flags are theirs)."""
        people = ThreadPeople(dict(self.names), self.starter, dict(self.redirected), dict(self.at_risk))
        people.names.setdefault(author.id, author.name)
        if people.starter is None:
            people.starter = author.id
        for e in entries:
            people._count(e, author.id)
        return people

    def _count(self, e: Entry, member: str | None) -> None:
        if member is None:
            return
        if e.kind is EntryKind.REDIRECTION:
            self.redirected[member] = self.redirected.get(member, 0) + 1
        elif e.kind is EntryKind.RISK:
            self.at_risk[member] = self.at_risk.get(member, 0) + 1


def _role(starter: bool, redirected: int) -> str:
    roles = [STARTER] if starter else []
    roles.append(REDIRECTED if redirected else ("" if starter else BYSTANDER))
    return ",".join(r for r in roles if r)


def people_of(entries: Iterable[Entry]) -> ThreadPeople:
    """The members of a log (a whole thread, or a window of it: then the starter may be out of sight)."""
    people = ThreadPeople()
    turn_author: dict[int, str] = {}
    for e in entries:
        if e.kind is EntryKind.USER and e.author_id:
            people.names.setdefault(e.author_id, e.author_name or e.author_id)
            turn_author[e.turn] = e.author_id
            if people.starter is None:
                people.starter = e.author_id
        elif e.kind is EntryKind.BRANCH and e.author_id:
            # a branch is its author's conversation, whoever wrote in the history it was seeded with
            people.names.setdefault(e.author_id, e.author_name or e.author_id)
            people.starter = e.author_id
        elif e.kind is EntryKind.REOPEN:
            people.redirected.clear()
        else:
            people._count(e, e.author_id or turn_author.get(e.turn))
    return people


def starter_of(entries: Iterable[Entry]) -> str | None:
    """The member who started the conversation of ``entries`` (the whole log): the first to write, or the
    member a branch was opened for."""
    return people_of(entries).starter


# --- roles as people read them ----------------------------------------------------------------------

ROLE_LABELS = {STARTER: "starter", REDIRECTED: "redirected requests", BYSTANDER: "bystander"}


def roles(p: Participant) -> list[str]:
    return [r for r in p.role.split(",") if r]


def role_label(p: Participant) -> str:
    """``starter``, ``redirected requests (2)``, ``bystander``... ('' for cases filed before roles)."""
    words = []
    for role in roles(p):
        label = ROLE_LABELS.get(role, role)
        words.append(f"{label} ({p.redirected})" if role == REDIRECTED and p.redirected else label)
    return ", ".join(words)


def counts_against(p: Participant) -> bool:
    """Whether an abuse end counts against this participant: only members whose requests were redirected
    (every participant of a case filed before roles were recorded)."""
    return not p.role or REDIRECTED in roles(p)


def listed(participants: list[Participant], shown: Callable[[Participant], str], sep: str = ", ") -> str:
    """The participants of a case as ``shown`` writes each, with their role when there were several (a
    shared thread): ``Ana (U1) [starter], Ben (U2) [redirected requests (3)]``."""
    several = len(participants) > 1
    return sep.join(shown(p) + (f" [{role_label(p)}]" if several and role_label(p) else "") for p in participants)
