"""The layering rules: the core imports no platform library; redis and anthropic stay in their modules."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _core_files() -> list[Path]:
    return sorted((ROOT / "bot").rglob("*.py"))


def test_core_imports_no_platform_library():
    offenders = {str(p.relative_to(ROOT)): _imports(p) & {"discord", "slack_bolt", "slack_sdk", "aiohttp"}
                 for p in _core_files()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_store_imports_redis_and_only_the_client_imports_anthropic():
    for path in _core_files():
        rel = path.relative_to(ROOT).as_posix()
        found = _imports(path)
        if not rel.startswith("bot/store/"):
            assert not found & {"redis", "fakeredis"}, rel
        if rel != "bot/anthropic_client.py":
            assert "anthropic" not in found, rel


def test_the_rule_checker_sees_imports():
    # guard against a checker that silently finds nothing
    assert "redis" in _imports(ROOT / "bot" / "store" / "connection.py")
    assert "anthropic" in _imports(ROOT / "bot" / "anthropic_client.py")


# --- floors: config/ below bot/ below adapters/; the store below the pipeline and the engine ---------------


def _modules(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full dotted name (``from a import b`` counts as ``a`` and
    ``a.b``; relative imports resolved against the file's package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _offenders(files: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in files:
        bad = sorted(m for m in _modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[path.relative_to(ROOT).as_posix()] = bad
    return found


def test_config_imports_nothing_from_bot_or_adapters():
    assert _offenders(sorted((ROOT / "config").rglob("*.py")), ("bot", "adapters")) == {}


def test_the_store_imports_neither_the_pipeline_nor_the_engine():
    assert _offenders(sorted((ROOT / "bot" / "store").rglob("*.py")), ("bot.pipeline", "bot.engine")) == {}


def test_the_core_imports_no_adapter():
    assert _offenders(_core_files(), ("adapters",)) == {}


# --- the engine and the pipeline are peers: the turn never reaches back into what feeds it -----------------


def _path_of(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _loaded_with(module: str) -> set[str]:
    """Every module of ours that importing ``module`` loads: its imports, theirs, and so on (with the
    packages they live in)."""
    loaded: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        path = _path_of(name)
        if path is None or name in loaded:
            continue
        loaded.add(name)
        todo.extend(_modules(path))
        todo.extend(".".join(name.split(".")[:n]) for n in range(1, name.count(".") + 1))
    return loaded


#: What feeds a turn: the pipeline (ingest, leases, drains), the members' use cases and the worker's loops.
_ABOVE_THE_TURN = ("bot.pipeline", "bot.member_actions", "bot.worker", "bot.bootstrap")


def test_the_engine_and_the_modules_it_is_split_into_do_not_import_the_pipeline():
    loaded = _loaded_with("bot.engine")
    assert {"bot.turn_model", "bot.turn_commit", "bot.case_filing"} <= loaded  # the engine's parts are followed
    assert sorted(m for m in loaded if m in _ABOVE_THE_TURN) == []


def test_the_floor_checker_sees_full_and_relative_imports():
    # guard against a checker that silently finds nothing
    assert "bot.store.inbox_entry" in _modules(ROOT / "bot" / "pipeline.py")
    assert "bot.notices" in _modules(ROOT / "bot" / "engine.py")  # ``from . import notices``
    assert "config.communities" in _modules(ROOT / "config" / "settings.py")
