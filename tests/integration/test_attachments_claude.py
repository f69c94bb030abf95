"""Members' files through the engine, the real anthropic SDK and the Messages API stand-in (which refuses
what the real API refuses), on a real Redis: valid blocks, lines for what is left out, a refused file
dropped for good, byte-identical cached prefixes, and no bytes left after an end under child sexual
exploitation."""

from __future__ import annotations

import base64
import hashlib
import itertools
import time
from dataclasses import replace

import pytest

from bot.store import keys
from bot.types import Attachment, Author, ReplyKind, ThreadRef, ThreadStatus
from tests.integration.dashboard_client import dashboard
from tests.integration.engine_helpers import claude_runtime, message
from tests.support import files
from tests.support.anthropic_standin import http_error, reply, tool_use
from tests.support.prompt_cache import shares_cached_prefix

T = ThreadRef("discord", "guild-1", "chan-1", "thread-files")


def attach(name: str, media_type: str, data: bytes) -> Attachment:
    return Attachment(name, media_type, len(data), link=f"https://cdn.example/{name}", data=data)


def with_files(text: str, *attachments: Attachment):
    return replace(message(T, text), attachments=attachments)


def file_blocks(body: dict, index: int = -1) -> list[dict]:
    return [b for b in body["messages"][index]["content"] if b["type"] in ("image", "document")]


def all_file_blocks(body: dict) -> list[dict]:
    return [b for m in body["messages"] for b in m["content"] if b["type"] in ("image", "document")]


async def redis_dump(redis_client) -> str:
    """Every value in Redis as one string (to look for a file's bytes by their base64 or hash)."""
    parts = []
    async for key in redis_client.scan_iter("*"):
        kind = await redis_client.type(key)
        if kind == "string":
            parts.append(await redis_client.get(key))
        elif kind == "hash":
            parts.extend((await redis_client.hgetall(key)).values())
        elif kind == "list":
            parts.extend(await redis_client.lrange(key, 0, -1))
        elif kind == "zset":
            parts.extend(await redis_client.zrange(key, 0, -1))
        elif kind == "set":
            parts.extend(await redis_client.smembers(key))
    return "\n".join(str(p) for p in parts)


@pytest.fixture
async def runtime(redis_client, anthropic_standin):
    rt = claude_runtime(redis_client, anthropic_standin.base_url, threshold=1)
    yield rt
    await rt.aclose()


async def test_an_image_a_pdf_and_a_text_file_reach_the_api_as_valid_blocks(runtime, anthropic_standin):
    anthropic_standin.enqueue(reply("I see a red square, a PDF and your notes."))
    outcome = await runtime.member_actions.handle_message(with_files(
        "what are these?", attach("shot.png", "image/png", files.png()), attach("doc.pdf", "application/pdf",
                                                                                 files.pdf(2)),
        attach("notes.md", "text/markdown", b"# Notes\nhello")))
    assert [r.kind for r in outcome.replies] == [ReplyKind.ANSWER]
    body = anthropic_standin.last_body
    blocks = file_blocks(body)
    assert [(b["type"], b["source"]["type"], b["source"]["media_type"]) for b in blocks] == [
        ("image", "base64", "image/png"), ("document", "base64", "application/pdf"),
        ("document", "text", "text/plain")]
    assert base64.b64decode(blocks[0]["source"]["data"]) == files.png()
    assert blocks[2]["source"]["data"] == "# Notes\nhello" and blocks[2]["title"] == "notes.md"
    assert body["messages"][-1]["content"][3] == {"type": "text", "text": "what are these?"}


async def test_left_out_files_get_one_line_and_the_text_a_normal_answer(runtime, anthropic_standin):
    anthropic_standin.enqueue(reply("Here is my answer."))
    images = [attach(f"photo{n}.png", "image/png", files.png(10 + n, 10)) for n in range(1, 10)]
    outcome = await runtime.member_actions.handle_message(with_files(
        "compare these", *images, attach("report.docx", "application/msword", b"PK\x03\x04"),
        attach("cat.png", "image/png", files.not_an_image()), attach("huge.png", "image/png", files.bomb()),
        Attachment("big.zip", "application/zip", 99_000_000, problem="it is larger than 25 MB")))
    assert [r.kind for r in outcome.replies] == [ReplyKind.ANSWER, ReplyKind.INFO]
    assert outcome.replies[1].text.splitlines() == [
        "photo6.png, photo7.png, photo8.png, photo9.png: at most 5 images per message are read",
        "report.docx: this file type isn't supported (images, PDFs and text files are)",
        "cat.png: it isn't a valid PNG, JPEG, GIF or WebP image",
        "huge.png: the image is too large to open safely",
        "big.zip: it is larger than 25 MB",
    ]
    assert len(file_blocks(anthropic_standin.last_body)) == 5  # the model is told of the rest in text
    notes = [b["text"] for b in anthropic_standin.last_body["messages"][-1]["content"] if b["type"] == "text"]
    assert "[attachment not read: report.docx: this file type isn't supported (images, PDFs and text files are)]" \
        in notes


async def test_a_file_the_api_refuses_is_dropped_and_never_sent_again(runtime, anthropic_standin):
    anthropic_standin.enqueue(http_error(400, message="messages.0.content.0.image.source.base64.data: Could not "
                                                      "process image"),
                              reply("Answered without the image."), reply("Second answer."))
    outcome = await runtime.member_actions.handle_message(
        with_files("look", attach("odd.png", "image/png", files.png())))
    assert [r.kind for r in outcome.replies] == [ReplyKind.ANSWER, ReplyKind.INFO]
    assert outcome.replies[1].text == "odd.png: the model could not read this file"
    assert len(file_blocks(anthropic_standin.bodies[0])) == 1 and not file_blocks(anthropic_standin.bodies[1])
    await runtime.member_actions.handle_message(message(T, "and now?"))
    assert not all_file_blocks(anthropic_standin.last_body)
    assert "odd.png" in str(anthropic_standin.last_body["messages"][0])  # named, as text


async def test_twenty_turns_with_images_keep_the_cached_prefix_and_send_the_images(runtime, anthropic_standin):
    answers = itertools.count()
    anthropic_standin.responder = lambda body: reply(f"Answer number {next(answers)}.")
    photo = files.photo_12mb()
    for n in range(1, 21):
        extra = ()
        if n == 1:
            extra = (attach("photo.jpg", "image/jpeg", photo),)
        elif n == 5:
            extra = (attach("screen.png", "image/png", files.png(800, 600)),)
        await runtime.member_actions.handle_message(with_files(f"turn {n}: tell me more", *extra))
    bodies = anthropic_standin.bodies
    assert len(bodies) == 20
    counts = [len(all_file_blocks(b)) for b in bodies]
    assert counts == [1] * 4 + [2] * 16
    assert all(max(_image_size(b)) <= 1568 for body in bodies for b in all_file_blocks(body)
               if b["source"]["media_type"] == "image/jpeg")
    shared = [shares_cached_prefix(a, b) for a, b in itertools.pairwise(bodies)]
    assert sum(shared[:9]) >= 9 * 9 // 10 and sum(shared[9:]) >= 9, shared


def _image_size(block: dict) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(block["source"]["data"]))) as img:
        return img.size


async def test_an_end_under_child_sexual_exploitation_deletes_the_threads_files_at_once(
        runtime, anthropic_standin, redis_client):
    image = files.png(120, 90, (1, 2, 3))
    encoded = base64.b64encode(image).decode()
    digest = hashlib.sha256(image).hexdigest()
    redirect = tool_use("record_redirection", {"category": "child_sexual_exploitation", "note": "declined"})
    anthropic_standin.enqueue(reply("I won't help with that.", redirect), reply("Let's talk about something else."))
    await runtime.member_actions.handle_message(with_files("look", attach("x.png", "image/png", image)))
    assert encoded in await redis_dump(redis_client)
    end = tool_use("end_conversation", {"reason": "persistent_abuse", "category": "child_sexual_exploitation",
                                        "summary": "Kept asking."})
    anthropic_standin.enqueue(reply(end))
    outcome = await runtime.member_actions.handle_message(message(T, "again"))
    assert outcome.status is ThreadStatus.ENDED and outcome.case is not None
    dump = await redis_dump(redis_client)
    assert encoded not in dump and not await redis_client.exists(keys.files(T.key))
    refs = [a for e in outcome.case.transcript for a in e.attachments or ()]
    assert [(a.name, a.media_type, a.size, a.sha256, a.link) for a in refs] == [
        ("x.png", "image/png", len(image), digest, "https://cdn.example/x.png")]
    assert encoded not in outcome.case.to_json() and digest in outcome.case.to_json()
    from adapters.dashboard.export import to_csv, to_jsonl
    from bot.casefile import render_case_text

    posted = render_case_text(outcome.case)  # the mod-log post's transcript file, the CLI's and the console's
    assert f"[file] x.png (image/png, {len(image):,} bytes) sha256:{digest} https://cdn.example/x.png" in posted
    for shown in (posted, to_jsonl([outcome.case]), to_csv([outcome.case])):
        assert encoded not in shown and encoded[:40] not in shown
    async with dashboard(runtime, [T.community], "mod-a") as (mod,):
        page = await (await mod.client.get(f"/cases/{T.community}/{outcome.case.case_id}")).text()
        exported = await (await mod.client.get("/export.jsonl")).text()
    assert "x.png" in page and f"sha256:{digest}" in page and encoded[:40] not in page
    assert digest in exported and encoded[:40] not in exported
    # a file sent to the ended thread is not kept either
    await runtime.member_actions.handle_message(with_files("hello?", attach("y.png", "image/png", files.png(5, 5))))
    assert not await redis_client.exists(keys.files(T.key))


async def test_forget_user_and_retention_remove_stored_files(runtime, anthropic_standin, redis_client):
    from bot.store.retention import Retention

    anthropic_standin.responder = lambda body: reply("Seen.")
    image = files.png(70, 70, (9, 8, 7))
    encoded = base64.b64encode(image).decode()
    other = ThreadRef("discord", "guild-1", "chan-1", "thread-other")
    await runtime.member_actions.handle_message(with_files("mine", attach("me.png", "image/png", image)))
    await runtime.member_actions.handle_message(replace(message(other, "old", Author("u-bob", "bob")), attachments=(
        attach("old.png", "image/png", files.png(33, 33, (4, 4, 4))),)))
    old_encoded = base64.b64encode(files.png(33, 33, (4, 4, 4))).decode()
    dump = await redis_dump(redis_client)
    assert encoded in dump and old_encoded in dump
    retention = Retention(redis_client, case_retention_days=365, idle_ttl_days=30)
    await retention.forget_user("discord", "u-alice")
    dump = await redis_dump(redis_client)
    assert encoded not in dump and "me.png" not in dump
    # retention: a thread past its idle lifetime goes with its files (here: keys without a TTL, long idle)
    assert old_encoded in dump  # bob's file stays
    for key in (keys.state(other.key), keys.log(other.key), keys.files(other.key), keys.files_order(other.key)):
        await redis_client.persist(key)
    later = Retention(redis_client, case_retention_days=365, idle_ttl_days=30, clock=lambda: time.time() + 40 * 86400)
    assert (await later.purge()).threads_deleted >= 1
    assert old_encoded not in await redis_dump(redis_client)


async def test_the_console_attaches_a_file_to_the_next_message(runtime, anthropic_standin, tmp_path):
    from adapters.console.session import ConsoleSession

    anthropic_standin.enqueue(reply("A small red picture."))
    (tmp_path / "shot.png").write_bytes(files.png())
    session = ConsoleSession(runtime)
    said = await session.handle_line(f"/attach {tmp_path / 'shot.png'}")
    assert said == ["[info] shot.png goes with your next message."]
    lines = await session.handle_line("what is this?")
    assert lines == ["bot> A small red picture."]
    (block,) = file_blocks(anthropic_standin.last_body)
    assert base64.b64decode(block["source"]["data"]) == files.png()


async def test_an_edit_with_files_in_an_ended_thread_branches_with_them(runtime, anthropic_standin):
    from bot.types import EditedMessage

    anthropic_standin.responder = lambda body: reply("Answer.")
    first = message(T, "my question")
    await runtime.member_actions.handle_message(first)
    await runtime.member_actions.end_by_user(T, first.author)
    branch = ThreadRef(T.platform, T.community, T.channel, "thread-branch")

    async def open_branch(_text: str) -> ThreadRef:
        return branch

    edit = EditedMessage(T, first.author, first.message_id, "", attachments=(attach("new.png", "image/png",
                                                                                      files.png(9, 9)),))
    outcome = await runtime.member_actions.handle_edit(edit, open_branch)
    assert outcome.branch == branch
    (block,) = file_blocks(anthropic_standin.last_body)
    assert base64.b64decode(block["source"]["data"]) == files.png(9, 9)
