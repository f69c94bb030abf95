"""The Slack adapter: slack-bolt (async) over Socket Mode or HTTP, translating to the core engine."""
