"""Plain-text rendering of a case: attached to mod-log posts and shown by the CLI."""

from __future__ import annotations

from bot.participants import listed
from bot.types import CATEGORY_LABELS, AttachmentRef, Case, Entry, EntryKind, iso

_MARKERS = {
    EntryKind.REDIRECTION: "[REDIRECTION]",
    EntryKind.WARNING: "[WARNING]",
    EntryKind.RISK: "[RISK FLAG]",
    EntryKind.CRISIS: "[CRISIS RESOURCES]",
    EntryKind.REFUSAL: "[API REFUSAL]",
    EntryKind.END: "[END]",
    EntryKind.REOPEN: "[REOPENED]",
    EntryKind.BRANCH: "[BRANCH]",
    EntryKind.NOTICE: "[NOTICE]",
}


def render_entry(entry: Entry) -> str:
    when = iso(entry.at)
    if entry.kind is EntryKind.USER:
        who = entry.author_name or entry.author_id or "user"
        files = "".join(f"\n    {describe_file(a)}" for a in entry.attachments or ())
        return f"{when}  {who}: {entry.text}{files}"
    if entry.kind is EntryKind.ASSISTANT:
        return f"{when}  threadguard: {entry.text}"
    marker = _MARKERS.get(entry.kind, f"[{entry.kind.value.upper()}]")
    extra = f" ({CATEGORY_LABELS.get(entry.category, entry.category)})" if entry.category else ""
    return f"{when}  {marker}{extra} {entry.text}".rstrip()


def describe_file(ref: AttachmentRef) -> str:
    """A member's file as moderators see it: name, type, size, SHA-256 and link (never its content)."""
    line = f"[file] {ref.name} ({ref.media_type}, {ref.size:,} bytes) sha256:{ref.sha256 or '-'}"
    if ref.link:
        line += f" {ref.link}"
    return line + (f" [{ref.note}]" if ref.note else "")


def render_case_text(case: Case) -> str:
    """The whole case as text: header, then the transcript with the ladder marked in it."""
    lines = [
        f"Case #{case.case_id} ({case.action}) in {case.platform} community {case.community}",
        f"Thread: {case.thread}",
        f"Reason: {case.reason or '-'}   Category: {CATEGORY_LABELS.get(case.category or '', case.category or '-')}",
        f"Redirections: {case.redirect_count}   Warned: {'yes' if case.warned else 'no'}   "
        f"Risk flagged: {'yes' if case.at_risk else 'no'}",
        f"Ended at: {case.ended_at}   Ended by: {case.ended_by or '-'}",
        "Participants: " + (listed(case.participants, lambda p: f"{p.name} ({p.id})") or "-"),
    ]
    if case.self_harm_marker:
        lines.append(f"!! {case.self_harm_marker}")
    if case.summary:
        lines.append(f"Summary: {case.summary}")
    if case.jump_url:
        lines.append(f"Link: {case.jump_url}")
    if case.branch_of:
        lines.append(f"Branched from: {case.branch_of}")
    if case.branches:
        lines.append("Branches: " + ", ".join(case.branches))
    if case.refers_to is not None:
        lines.append(f"Refers to case #{case.refers_to}")
    if case.note:
        lines.append(f"Note: {case.note}")
    lines.append("")
    lines.append("Transcript:")
    lines.extend(render_entry(e) for e in case.transcript)
    return "\n".join(lines) + "\n"
