"""The moderators' web dashboard and command-line tools."""
