"""The moderators' review desk: review state of ended threads, members' appeals, members' end history.

Every ended thread's case is *unreviewed* until a moderator takes it (*in review*, with an assignee) and
then *reviewed* with an outcome: ``upheld``, ``mistaken`` or ``reopened``. Review steps are also filed as
moderator actions on the case, so the audit trail stays in the case log.

A member who took part in an ended thread may appeal its ending once per case, with an optional
sentence. The appeal waits in the community's appeals queue until a moderator decides: ``uphold`` or
``reopen`` (``bot.moderation``, which holds every moderator action on a case).

The desk also keeps the one record of which endings count against a member (``standing_ends``), read by
the community's repeat policy and the dashboard's member record alike.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Protocol

from bot.caselog import CaseLog
from bot.errors import CaseNotFound
from bot.participants import counts_against as participant_counts
from bot.participants import people_of
from bot.types import (
    Author,
    Case,
    Entry,
    ThreadRef,
    iso,
)
from bot.validation import check_message
from config.communities import Communities

log = logging.getLogger(__name__)

OUTCOMES = ("upheld", "mistaken", "reopened")
#: Longest sentence a member may add to an appeal (Discord's modal and Slack's input use it too).
APPEAL_MAX_CHARS = 500
DAY_S = 86_400


class ReviewState(enum.StrEnum):
    UNREVIEWED = "unreviewed"
    IN_REVIEW = "in_review"
    REVIEWED = "reviewed"


@dataclass(frozen=True)
class Review:
    case_id: int
    state: ReviewState = ReviewState.UNREVIEWED
    assignee: str = ""
    outcome: str = ""
    by: str = ""
    at: float = 0.0

    @classmethod
    def from_hash(cls, case_id: int, data: dict[str, str]) -> Review:
        try:
            state = ReviewState(data.get("state", "unreviewed"))
        except ValueError:
            state = ReviewState.UNREVIEWED
        try:
            at = float(data.get("at", 0))
        except ValueError:
            at = 0.0
        return cls(case_id, state, data.get("assignee", ""), data.get("outcome", ""), data.get("by", ""), at)


@dataclass
class Appeal:
    community: str
    case_id: int
    member_id: str
    member_name: str
    text: str
    at: float
    status: str = "open"  # open | upheld | reopened
    decided_by: str = ""
    decided_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> Appeal:
        data = json.loads(raw)
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


class AppealResult(enum.StrEnum):
    FILED = "filed"
    DUPLICATE = "duplicate"
    NOT_PARTICIPANT = "not_participant"
    NOT_APPEALABLE = "not_appealable"
    INVALID = "invalid"


@dataclass(frozen=True)
class AppealAnswer:
    """What happened to an appeal, and the words for the member."""

    result: AppealResult
    message: str
    appeal: Appeal | None = None
    case: Case | None = None


class ReviewStorage(Protocol):
    async def reviews(self, community: str, case_ids: Iterable[int]) -> dict[int, dict[str, str]]: ...

    async def assign(self, community: str, case_id: int, assignee: str, *, take_over: bool) -> str: ...

    async def conclude(self, community: str, case_id: int, outcome: str, by: str) -> None: ...

    async def file_appeal(self, community: str, case_id: int, member_id: str, payload: str,
                          at: float) -> bool: ...

    async def decide_appeal(self, community: str, case_id: int, member_id: str, payload: str) -> bool: ...

    async def appeals(self, community: str, case_id: int) -> dict[str, str]: ...

    async def appeal(self, community: str, case_id: int, member_id: str) -> str | None: ...

    async def open_appeals(self, community: str) -> list[tuple[int, str]]: ...

    async def open_appeal_bodies(self, community: str) -> list[str]: ...

    async def record_end(self, community: str, member_id: str, case_ref: str, at: float) -> None: ...

    async def drop_end(self, community: str, member_id: str, case_ref: str) -> None: ...

    async def ends_since(self, community: str, member_id: str, since: float) -> int: ...

    async def end_counts(self, community: str, member_ids: list[str]) -> dict[str, int]: ...


def appeal_filed(case_id: int) -> str:
    return (f"Thank you. Your appeal of this ending (case #{case_id}) went to the moderators; you'll hear "
            "back here when one of them has looked at it.")


APPEAL_DUPLICATE = "You already appealed this ending; the moderators have it and will answer here."
APPEAL_NOT_PARTICIPANT = "Only someone who took part in this conversation can appeal its ending."
APPEAL_NOT_APPEALABLE = "There is no ended conversation to appeal here."


def decision_text(decision: str, case_id: int) -> str:
    if decision == "reopen":
        return (f"A moderator reviewed your appeal of case #{case_id} and agreed: the conversation is "
                "open again and you can continue it.")
    return (f"A moderator reviewed your appeal of case #{case_id} and upheld the ending. You can start a new "
            "conversation at any time.")


def counts_against(case: Case) -> bool:
    """Whether an ended thread counts against its participants (repeat marker, repeat policy)."""
    return case.action == "end" and case.reason == "persistent_abuse"


def _end_ref(case: Case) -> str:
    return case.case_ref or f"{case.thread}#{case.case_id}"


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


class ReviewDesk:
    """Review state, appeals and members' end history for every community."""

    def __init__(self, store: ReviewStorage, cases: CaseLog, communities: Communities) -> None:
        self._store = store
        self._cases = cases
        self._communities = communities

    # --- review state --------------------------------------------------------------------------

    async def reviews(self, community: str, case_ids: Iterable[int]) -> dict[int, Review]:
        ids = list(case_ids)
        found = await self._store.reviews(community, ids)
        return {n: Review.from_hash(n, found.get(n, {})) for n in ids}

    async def review(self, community: str, case_id: int) -> Review:
        return (await self.reviews(community, [case_id]))[case_id]

    async def end_case(self, community: str, case_id: int) -> Case:
        """The case ``case_id`` when it is an ended thread; ``CaseNotFound`` otherwise."""
        case = await self._cases.get(community, case_id)
        if case.action != "end":
            raise CaseNotFound(f"case {case_id} of {community} is not an ended thread")
        return case

    # --- appeals -------------------------------------------------------------------------------

    async def file_appeal(self, community: str, case_id: int, member: Author, text: str = "") -> AppealAnswer:
        """File ``member``'s appeal of case ``case_id`` (once per member per case)."""
        try:
            case = await self.end_case(community, case_id)
        except CaseNotFound:
            return AppealAnswer(AppealResult.NOT_APPEALABLE, APPEAL_NOT_APPEALABLE)
        if member.id not in {p.id for p in case.participants}:
            return AppealAnswer(AppealResult.NOT_PARTICIPANT, APPEAL_NOT_PARTICIPANT, case=case)
        sentence = ""
        if text.strip():
            checked = check_message(text, APPEAL_MAX_CHARS)
            if checked.problem:
                return AppealAnswer(AppealResult.INVALID, f"Your appeal is too long: at most {APPEAL_MAX_CHARS} "
                                                          "characters, please.", case=case)
            sentence = checked.text
        appeal = Appeal(community, case_id, member.id, member.name[:100], sentence, time.time())
        if not await self._store.file_appeal(community, case_id, member.id, appeal.to_json(), appeal.at):
            return AppealAnswer(AppealResult.DUPLICATE, APPEAL_DUPLICATE, case=case)
        log.info("appeal filed on case %s of %s by member %s", case_id, community, member.id)
        return AppealAnswer(AppealResult.FILED, appeal_filed(case_id), appeal, case)

    async def case_for_appeal(self, community: str, case_id: int) -> Case | None:
        """The ended-thread case a member may appeal, or None."""
        try:
            return await self.end_case(community, case_id)
        except CaseNotFound:
            return None

    async def has_appealed(self, community: str, case_id: int, member_id: str) -> bool:
        return await self._store.appeal(community, case_id, member_id) is not None

    async def appeals_of(self, community: str, case_id: int) -> list[Appeal]:
        found = [Appeal.from_json(raw) for raw in (await self._store.appeals(community, case_id)).values()]
        return sorted(found, key=lambda a: a.at)

    async def open_appeals(self, communities: Iterable[str]) -> list[Appeal]:
        """Every appeal still waiting in these communities, oldest first."""
        found: list[Appeal] = []
        for community in communities:
            found.extend(Appeal.from_json(raw) for raw in await self._store.open_appeal_bodies(community))
        return sorted(found, key=lambda a: a.at)

    # --- members' end history ------------------------------------------------------------------

    # The one record of which endings count against a member: the repeat policy and the dashboard's
    # member record (repeat marks, strikes) both read it, and every review step writes it.

    async def case_filed(self, case: Case) -> None:
        """Remember an abuse end in the history of every participant whose requests were redirected
        (idempotent: keyed by the case's end ref). An end the member asked for is no strike against them,
        nor is an end against a bystander of a shared thread."""
        await self._record(case, time.time())

    async def restore(self, case: Case) -> None:
        """The ending was upheld: it counts against its participants again (as of when it ended)."""
        await self._record(case, _epoch(case.ended_at) or time.time())

    async def _record(self, case: Case, at: float) -> None:
        if not counts_against(case):
            return
        for participant in case.participants:
            if participant_counts(participant):  # in a shared thread, only members whose requests were redirected
                await self._store.record_end(case.community, participant.id, _end_ref(case), at)

    async def standing_ends(self, community: str, member_ids: Iterable[str]) -> dict[str, int]:
        """Member id -> abuse endings that still count against them in ``community``."""
        return await self._store.end_counts(community, sorted(set(member_ids)))

    async def strike_out(self, case: Case) -> None:
        """The ending was a mistake (reviewed so, or reopened): it no longer counts against anyone."""
        for participant in case.participants:
            await self._store.drop_end(case.community, participant.id, _end_ref(case))

    async def risk_flagged(self, thread: ThreadRef, kind: str, transcript: list[Entry],
                           jump_url: str | None) -> Case | None:
        """File a risk alert case when the community opted in (``risk_alerts``); None otherwise."""
        if not self._communities.get(thread.community).risk_alerts:
            return None
        alert = Case(case_id=0, community=thread.community, platform=thread.platform, thread=thread.key,
                     channel=thread.channel, action="risk", category=kind,
                     summary=f"The model flagged that a member may be at risk ({kind.replace('_', ' ')}). The "
                             "conversation goes on; it cannot be ended by the model now.",
                     at_risk=True, ended_at=iso(time.time()), ended_by="model",
                     participants=people_of(transcript).participants(), transcript=list(transcript),
                     jump_url=jump_url)
        filed = await self._cases.file_alert(alert)
        log.info("risk alert filed for thread %s as case %s", thread.key, filed.case_id)
        return filed

    async def threshold_for(self, community: str, member_id: str, threshold: int) -> int:
        """The ladder threshold for this member's turn: 1 (warned at the first redirection) when the
        community's repeat policy is on and the member had enough ended threads recently."""
        policy = self._communities.get(community)
        if not policy.repeat_ends or threshold <= 1:
            return threshold
        since = time.time() - policy.repeat_days * DAY_S
        if await self._store.ends_since(community, member_id, since) >= policy.repeat_ends:
            return 1
        return threshold
