"""Settings (environment variables and ``.env``) and per-community configuration."""
