"""The history window: its start lives in the thread state and moves seldom, so the prompt prefix the
Messages API caches is byte-identical from one turn to the next; a turn reads the window, not the log."""

from __future__ import annotations

from bot.bootstrap import build_runtime
from bot.model import ModelRequest, ModelResponse, TextBlock
from bot.store import keys
from bot.types import Author, IncomingMessage, ThreadRef
from config.settings import EngineSettings, RedisSettings, Settings

T = ThreadRef("console", "local", "cli", "window")


class RecordingModel:
    label = "recording"
    offline = True

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    async def respond(self, request: ModelRequest, sink: object = None) -> ModelResponse:
        self.requests.append(request)
        return ModelResponse([TextBlock(f"answer {len(self.requests)} " + "y" * 380)], "end_turn")

    async def aclose(self) -> None:
        return None


def texts(request: ModelRequest) -> list[str]:
    return [b.text for m in request.messages for b in m.blocks if isinstance(b, TextBlock)]


async def test_the_window_moves_seldom_and_the_prefix_stays_byte_identical(redis_client):
    model = RecordingModel()
    settings = Settings(redis=RedisSettings(url=None), engine=EngineSettings(history_token_budget=2000))
    rt = build_runtime(settings, model=model, redis=redis_client)
    for i in range(60):
        msg = IncomingMessage(T, Author("u1", "ann"), f"question {i} " + "x" * 380, message_id=f"m{i}")
        await rt.member_actions.handle_message(msg)
    moves = 0
    for before, after in zip(model.requests, model.requests[1:], strict=False):
        previous, current = texts(before), texts(after)
        if current[:len(previous) - 1] == previous[:-1]:  # the earlier history is a prefix of the next one
            continue
        moves += 1
        assert current[0].startswith("question")  # a moved window starts with the member's line
    state = await redis_client.hgetall(keys.state(T.key))
    # about 200 tokens a turn, 2,000 tokens of budget, cut to half: a move every ~5 turns, not every turn
    assert 5 <= moves <= 15, moves
    assert int(state["win"]) > 0
    assert all(sum(len(t) for t in texts(r)) // 4 <= 2000 + 200 for r in model.requests)
    await rt.aclose()
