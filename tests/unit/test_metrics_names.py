"""The Grafana dashboard under docs/ queries only series the processes export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from adapters.metrics import PrometheusMetrics
from bot.model import Usage

ROOT = Path(__file__).resolve().parents[2]


def test_every_series_the_grafana_dashboard_queries_is_exported():
    metrics = PrometheusMetrics()
    metrics.turn("slack", "answered", 0.1)
    metrics.model_call(0.5, 0.1)
    metrics.ladder_event("end", "harassment")
    metrics.usage(Usage(1, 2, 3, 4))
    metrics.store_error("begin_turn")
    metrics.platform_error("slack", "ratelimited")
    metrics.rate_limited("slack", "chat.update")
    metrics.inbox_depth(2)
    metrics.lease_takeover()
    metrics.degraded.labels("demo_model").set(1)
    metrics.ready.set(1)
    exported = set(re.findall(r"^(threadguard_\w+)", metrics.exposition().decode(), re.M))
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"threadguard_\w+", target["expr"])}
    assert queried and queried <= exported, queried - exported
