"""One error hierarchy for threadguard.

Every error carries a ``user_message``: plain words that can be shown to a community member.
Nothing else about an error (its ``str``, its traceback) is ever shown to users.
"""

from __future__ import annotations

from config.errors import ConfigurationError, ThreadguardError

__all__ = ["CaseNotFound", "ConfigurationError", "LeaseLost", "LimitDeferred", "ModelBackingOff", "ModelError",
           "ModelOverloaded", "ModelRateLimited", "ModelRequestRejected", "NotAllowed", "StoreUnavailable",
           "ThreadBusy", "ThreadguardError", "TurnDeferred"]


class StoreUnavailable(ThreadguardError):
    """The conversation store (Redis) cannot be reached or failed mid-operation."""

    user_message = (
        "I can't reach my conversation storage right now, so I didn't process your message. "
        "Please send it again in a minute."
    )


class StoreRefusingWrites(StoreUnavailable):
    """Redis answers but refuses to store anything (out of memory, or a read-only replica)."""

    user_message = (
        "My conversation storage is full and not accepting anything new right now, so I didn't take your "
        "message. The admins can see this; please send it again in a few minutes."
    )


class ThreadBusy(ThreadguardError):
    """Another turn in the same thread held the thread for longer than we were willing to wait."""

    user_message = "I'm still answering an earlier message in this thread. Please send yours again shortly."


class LeaseLost(ThreadguardError):
    """A newer owner holds the thread (its fenced write was refused): this process stops working on it and
    commits nothing."""


class ModelError(ThreadguardError):
    """The model API failed in a way retries did not fix."""

    user_message = (
        "I couldn't reach the AI service just now, so I didn't answer. Nothing in this conversation "
        "changed; please send your message again in a minute."
    )


class ModelTimedOut(ModelError):
    """A model call went past its deadline (the client's own retries included)."""

    user_message = (
        "The AI service is taking far too long to answer, so I stopped waiting. Nothing in this conversation "
        "changed; please send your message again in a few minutes."
    )


class ModelRateLimited(ModelError):
    """The model API kept answering 429 after our retries; ``retry_after``: seconds the API asked us to
    wait (``retry-after`` or its rate-limit reset headers), when it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TurnDeferred(ThreadguardError):
    """The turn is not taken now: its message stays at the head of the inbox, the lease went back and the
    thread is due at ``until_ms`` (epoch ms), when it is taken up again."""

    def __init__(self, until_ms: int, why: str = "deferred") -> None:
        super().__init__(f"turn {why} until {until_ms}")
        self.until_ms = until_ms
        #: The waiting member is to be told now that the message is queued.
        self.tell = False


class ModelBackingOff(TurnDeferred):
    """The model API asked every worker to wait (a shared back-off): the turn is not taken now; its
    message stays in the inbox and is answered once the wait is over (``tell``: once per back-off and
    thread)."""

    def __init__(self, until_ms: int) -> None:
        super().__init__(until_ms, "model API back-off")


class LimitDeferred(TurnDeferred):
    """A message a limit kept is still over it when taken up again: it waits for the limit's next reset
    (its member was told when it was kept)."""

    def __init__(self, until_ms: int) -> None:
        super().__init__(until_ms, "waits for a limit")


class ModelOverloaded(ModelError):
    """The model API kept answering 529/5xx after our retries."""


class ModelRequestRejected(ModelError):
    """The model API rejected our request (4xx other than 429): a bug or a configuration problem."""

    user_message = "The AI service rejected this request. The admin has been told; please try again later."


class CaseNotFound(ThreadguardError):
    """A moderator asked for a case number that does not exist in their community."""

    user_message = "There is no case with that number in this community."


class NotAllowed(ThreadguardError):
    """The actor may not do this (e.g. a non-moderator running a moderator command)."""

    user_message = "You don't have permission to do that."
