"""Tools beside the bot: the behaviour evaluation (``threadguard eval``), apart from the platform adapters."""
