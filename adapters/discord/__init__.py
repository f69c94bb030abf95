"""The Discord adapter: translates Discord events into engine calls and the engine's outcomes into
Discord messages, thread locks and mod-log posts. It decides nothing itself."""
