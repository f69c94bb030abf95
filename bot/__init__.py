"""threadguard core: engine, ladder policy, store and model client. No platform imports."""
