"""threadguard adapters: platform surfaces that translate to and from the core engine."""
