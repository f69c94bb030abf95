"""The engine's words for one community and one place: the built-in English of ``bot.notices``, or the
community's own templates (``[community.<id>.texts]``, placeholders checked when the file is loaded).

Places: a thread, or, in a Discord direct message (community ``dm``), a numbered conversation in a
channel without threads, where the notices cannot speak of "this thread".
"""

from __future__ import annotations

from bot import notices
from bot.types import CATEGORY_LABELS, ThreadRef
from config.communities import CommunityConfig

DM_COMMUNITY = "dm"

DM_HOW_TO_GO_ON = (
    "You can start a new conversation at any time, or edit one of your earlier messages in this conversation "
    "to continue from that point in a new conversation."
)


def place(thread: ThreadRef) -> str:
    """``thread``, or ``conversation`` where there are no threads (a Discord direct message)."""
    return "conversation" if thread.platform == "discord" and thread.community == DM_COMMUNITY else "thread"


def _label(category: str | None) -> str:
    # Members are never told a conversation is about self-harm; moderators see the category in the case.
    chosen = "other" if category in (None, "self_harm") else category
    return CATEGORY_LABELS.get(chosen or "other", "Other").lower()


def warning(config: CommunityConfig, category: str | None, redirects: int) -> str:
    template = config.texts.warning
    if template is None:
        return notices.warning(category, redirects)
    return template.format(category=_label(category), redirects=redirects)


def freeze_notice(config: CommunityConfig, thread: ThreadRef, reason: str, category: str | None) -> str:
    where = place(thread)
    template = config.texts.freeze_notice_user if reason == "user_requested" else config.texts.freeze_notice
    if template is not None:
        return template.format(category=_label(category), place=where)
    if where == "thread":
        return notices.freeze_notice(reason, category)
    if reason == "user_requested":
        head = "This conversation has been ended at your request, and it is now closed."
    else:
        head = ("This conversation has been ended because it kept asking for help I can't give"
                f"{notices.about_category(category)} after repeated redirections and a warning. It is now "
                "closed and a moderator will review it.")
    return f"{head} {DM_HOW_TO_GO_ON}"


def frozen_reminder(config: CommunityConfig, thread: ThreadRef) -> str:
    where = place(thread)
    if config.texts.frozen_reminder is not None:
        return config.texts.frozen_reminder.format(place=where)
    if where == "thread":
        return notices.frozen_reminder()
    return f"This conversation has ended, so I won't answer in it. {DM_HOW_TO_GO_ON}"


def reopened(config: CommunityConfig, thread: ThreadRef) -> str:
    if config.texts.reopened is not None:
        return config.texts.reopened.format(place=place(thread))
    return notices.reopened()
