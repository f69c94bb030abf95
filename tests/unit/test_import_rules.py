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
    assert "redis" in _imports(ROOT / "bot" / "store" / "redis_store.py")
    assert "anthropic" in _imports(ROOT / "bot" / "anthropic_client.py")
