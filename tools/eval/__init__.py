"""``threadguard eval``: a scenario suite run through the real engine, and its scorecard."""
