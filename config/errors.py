"""The root of threadguard's one error hierarchy, and the error that bad settings raise.

The root lives here, on the lowest floor, so that configuration errors (raised by ``config/`` while
settings are read) belong to the same hierarchy as every other error without ``config/`` importing the
core; ``bot.errors`` builds the rest of the hierarchy on it.
"""

from __future__ import annotations


class ThreadguardError(Exception):
    """Root of every error threadguard raises on purpose."""

    user_message = "Something went wrong on my side. Please try again in a moment."


class ConfigurationError(ThreadguardError):
    """Settings are missing or inconsistent; raised at start-up, never mid-conversation."""

    user_message = "The bot is not configured correctly. Please tell the server admin."
