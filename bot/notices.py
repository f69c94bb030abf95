"""The engine's own words to community members: plain, kind, and never repeating harmful details."""

from __future__ import annotations

from bot.types import CATEGORY_LABELS

HOW_TO_GO_ON = (
    "You can start a new conversation at any time, or edit one of your earlier messages in this thread "
    "to continue from that point in a new thread."
)


#: Categories never named to the member as something they "asked for": a member talking about hurting
#: themselves is someone who may be at risk, not someone asking for forbidden help.
_UNNAMED = frozenset({"self_harm", "other"})


def about_category(category: str | None) -> str:
    """`` (label)`` for a category that may be named to the member, else nothing."""
    if not category or category in _UNNAMED or category not in CATEGORY_LABELS:
        return ""
    return f" ({CATEGORY_LABELS[category].lower()})"


def warning(category: str | None, redirects: int) -> str:
    return (
        f"\u26a0\ufe0f Warning: this conversation has asked {redirects} times for help I can't give"
        f"{about_category(category)}. If it continues, I may end this conversation. I'm glad to keep talking "
        "about something else."
    )


def freeze_notice(reason: str, category: str | None) -> str:
    if reason == "user_requested":
        head = "This conversation has been ended at your request, and this thread is now closed."
    else:
        head = (
            "This conversation has been ended because it kept asking for help I can't give"
            f"{about_category(category)} after repeated redirections and a warning. This thread is now closed "
            "and a moderator will review it."
        )
    return f"{head} {HOW_TO_GO_ON}"


def frozen_reminder() -> str:
    return f"This conversation has ended, so I won't answer here. {HOW_TO_GO_ON}"


def refusal_answer() -> str:
    return "I can't continue with that request. I'm happy to help with something else."


def empty_answer() -> str:
    return "I'm not sure how to answer that. Could you say a bit more?"


def reopened() -> str:
    return "A moderator has reopened this conversation. You can continue here."


def slow_down() -> str:
    return ("I have several of your messages in this thread still to answer. Please wait for my answers, "
            "then send this one again.")


def model_busy() -> str:
    return "I'm busy right now: your message is queued, and I'll answer it as soon as I can."


def thread_too_long() -> str:
    return ("This conversation has grown too long for me to continue here. Please start a new conversation; "
            "I'll be glad to go on there.")
