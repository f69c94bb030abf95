"""The moderators' read model and actions over numbered cases."""

from __future__ import annotations

import builtins
import time

from bot.errors import CaseNotFound
from bot.store import CaseStore
from bot.types import Author, Case, iso

ACTIONS = frozenset({"reopen", "note", "mistaken", "delete", "assign", "review", "risk"})


class CaseLog:
    """Numbered cases per community: every end and every moderator action."""

    def __init__(self, store: CaseStore) -> None:
        self._store = store

    async def get(self, community: str, case_id: int) -> Case:
        case = await self._store.get_case(community, case_id)
        if case is None:
            raise CaseNotFound(f"no case {case_id} in community {community}")
        return case

    async def list(self, community: str | None = None, offset: int = 0, limit: int = 50) -> builtins.list[Case]:
        """Newest first. Without a community: every community's cases, newest first."""
        if community is not None:
            return await self._store.list_cases(community, offset, limit)
        merged: builtins.list[Case] = []
        for c in await self._store.communities():
            merged.extend(await self._store.list_cases(c, 0, offset + limit))
        merged.sort(key=lambda c: (c.ended_at, c.case_id), reverse=True)
        return merged[offset:offset + limit]

    async def count(self, community: str) -> int:
        return await self._store.count_cases(community)

    async def communities(self) -> builtins.list[str]:
        return await self._store.communities()

    async def file_alert(self, case: Case) -> Case:
        """File a case that is not an end nor an action on one (a risk alert)."""
        return await self._store.file_action(case)

    async def add_action(self, community: str, refers_to: int, action: str, moderator: Author,
                         note: str | None = None) -> Case:
        """File a moderator action (reopen, note, mistaken, delete) as its own case."""
        if action not in ACTIONS:
            raise ValueError(f"unknown moderator action {action!r}")
        target = await self.get(community, refers_to)
        entry = Case(
            case_id=0, community=community, platform=target.platform, thread=target.thread,
            channel=target.channel, action=action, reason=target.reason, category=target.category,
            summary=note or f"{action} on case {refers_to}", ended_at=iso(time.time()),
            ended_by=f"moderator:{moderator.id}", refers_to=refers_to,
            moderator=f"{moderator.name} ({moderator.id})", note=note, jump_url=target.jump_url,
        )
        return await self._store.file_action(entry)
