"""The scorecard as a terminal table, as JSON and as a self-contained HTML page (inline CSS and SVG,
no script). Everything that came from a scenario file or a model run is escaped in the HTML."""

from __future__ import annotations

from html import escape
from typing import Any

from tools.eval.scorecard import METRICS

FORMAT = "threadguard-eval/1"


def _cell(summary: dict[str, Any], repeat: int) -> str:
    if summary.get("rate") is None:
        return "-"
    if repeat == 1:
        return f"{summary['count'][0]}/{summary['of'][0]}"
    return f"{summary['rate'] * 100:.0f}%±{summary['sd'] * 100:.0f}"


def _columns(report: dict[str, Any]) -> list[str]:
    return list(report["scorecard"]["classes"])


def metric_rows(report: dict[str, Any]) -> list[tuple[str, str, bool, list[str]]]:
    """(key, label, must_be_zero, cells per class) for every metric."""
    classes = report["scorecard"]["classes"]
    repeat = report["run"]["repeat"]
    return [(m.key, m.label, m.must_be_zero, [_cell(classes[c][m.key], repeat) for c in classes])
            for m in METRICS]


def usage_rows(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    usage = report["scorecard"]["usage"]
    cols = list(usage)

    def money(v: float | None) -> str:
        return "n/a" if v is None else f"${v:.4f}"

    def ends(u: dict[str, Any]) -> str:
        t = u["turns_to_end"]
        return "-" if not t else f"{t['mean']:g} ({t['min']:g}-{t['max']:g})"

    return [
        ("turns to a persistent end", [ends(usage[c]) for c in cols]),
        ("end attempts / refused", [f"{usage[c]['end_attempts']}/{usage[c]['refused_ends']}" for c in cols]),
        ("model calls", [str(usage[c]["model_calls"]) for c in cols]),
        ("input tokens", [str(usage[c]["input_tokens"]) for c in cols]),
        ("output tokens", [str(usage[c]["output_tokens"]) for c in cols]),
        ("cache write / read", [f"{usage[c]['cache_write_tokens']}/{usage[c]['cache_read_tokens']}" for c in cols]),
        ("cost (estimate)", [money(usage[c]["cost_usd"]) for c in cols]),
        ("turn latency p50 / p95", [f"{usage[c]['turn_p50_s'] * 1000:.0f}/{usage[c]['turn_p95_s'] * 1000:.0f} ms"
                                    for c in cols]),
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]


def render_text(report: dict[str, Any], failures: int = 12) -> str:
    run = report["run"]
    cols = _columns(report)
    lines = [f"threadguard eval: {run['model']}{' [offline]' if run['offline'] else ''}, "
             f"community {run['community']} (threshold {run['threshold']}), {run['scenarios']} scenarios "
             f"x {run['repeat']}, {run['seconds']:.1f} s", ""]
    lines += _table(["metric", *cols], [[label + (" (must be 0)" if zero else ""), *cells]
                                        for _, label, zero, cells in metric_rows(report)])
    lines.append("")
    lines += _table(["usage", *cols], [[label, *cells] for label, cells in usage_rows(report)])
    refused = report["scorecard"]["usage"]["overall"]["refused_by_kind"]
    if refused:
        lines += ["", "End attempts the engine refused (caught by the policy, not passes of the model): "
                  + ", ".join(f"{k}: {v}" for k, v in refused.items())]
    cost = report["run"]["prices"]
    lines.append(f"Cost: {cost or 'unknown model price: pass --price INPUT,OUTPUT'}")
    failed = [r for r in report["scenarios"] if not r["passed"]]
    if failed:
        lines += ["", f"Failed runs ({len(failed)}):"]
        for r in failed[:failures]:
            lines.append(f"  {r['id']} [{r['class']}, {r['lang']}] r{r['repeat']}: {'; '.join(r['failures'])}")
        if len(failed) > failures:
            lines.append(f"  ... {len(failed) - failures} more in the JSON and HTML reports")
    if report.get("baseline") is not None:
        lines += ["", *render_changes(report["baseline"])]
    return "\n".join(lines)


def render_changes(baseline: dict[str, Any], names: int = 15) -> list[str]:
    changes = baseline["changes"]
    regressions = [c for c in changes if c["regression"]]
    head = (f"Compared with {baseline['file']}: {len(regressions)} regression(s), "
            f"{len(changes) - len(regressions)} other change(s).")
    rows = [[("REGRESSION " if c["regression"] else "") + c["group"], c["label"], _pct(c["baseline"]),
             _pct(c["now"])] for c in changes if c["group"] != "scenario"]
    lines = [head, *(_table(["where", "metric", "baseline", "now"], rows) if rows else [])]
    failing = [c["metric"] for c in changes if c["group"] == "scenario"]
    if failing:
        more = f" and {len(failing) - names} more" if len(failing) > names else ""
        lines.append(f"Scenarios that passed in the baseline and now fail ({len(failing)}): "
                     f"{', '.join(failing[:names])}{more}")
    return lines


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


# --- HTML --------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#1b1f24;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#57606a}.demo{background:#fff4ce;border:1px solid #d4a72c;padding:6px 10px;border-radius:6px}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}thead th{background:#f6f8fa}
td.bad{background:#ffebe9;color:#82071e;font-weight:600}td.good{background:#dafbe1}
.pass{color:#116329;font-weight:600}.fail{color:#82071e;font-weight:600}
details{border:1px solid #d0d7de;border-radius:6px;margin:4px 0;padding:4px 8px}
summary{cursor:pointer}.turns td,.turns th{text-align:left;font-size:13px}.small{font-size:12px;color:#57606a}
.diff td:nth-child(2),.diff th:nth-child(2){text-align:left}
"""


def render_html(report: dict[str, Any]) -> str:
    run = report["run"]
    e = escape
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>threadguard eval: {e(run['model'])}</title><style>{_CSS}</style></head><body>",
        "<h1>threadguard eval scorecard</h1>",
        f"<p class=\"meta\">Model <b>{e(run['model'])}</b> &middot; community <b>{e(run['community'])}</b> "
        f"(threshold {int(run['threshold'])}) &middot; {int(run['scenarios'])} scenarios &times; "
        f"{int(run['repeat'])} &middot; {e(run['started'])} &middot; {float(run['seconds']):.1f} s &middot; "
        f"suite {e(run['suite_digest'])}</p>",
    ]
    if run["offline"]:
        parts.append("<p class=\"demo\">Offline demo model: not Claude. It recognises a few English phrases, so "
                     "these figures show the instrument working, not how Claude behaves.</p>")
    parts.append(chart_svg(report))
    parts.append("<h2>Scorecard</h2>" + _html_metrics(report))
    parts.append("<h2>Usage, cost and latency</h2>" + _html_table(
        ["", *_columns(report)], [[label, *cells] for label, cells in usage_rows(report)]))
    refused = report["scorecard"]["usage"]["overall"]["refused_by_kind"]
    parts.append("<p>End attempts the engine refused (caught by the policy layer, counted against the model): "
                 + (e(", ".join(f"{k}: {v}" for k, v in refused.items())) if refused else "none") + ".</p>")
    parts.append(f"<p class=\"small\">Cost: {e(str(run['prices'] or 'unknown model price'))}.</p>")
    langs = report["scorecard"]["languages"]
    parts.append("<h2>By language (scenarios passed)</h2>" + _html_table(
        ["language", "passed"], [[lang, _cell(s, run["repeat"])] for lang, s in langs.items()]))
    if report.get("baseline") is not None:
        parts.append(_html_baseline(report["baseline"]))
    parts.append("<h2>Scenarios</h2>" + "".join(_html_scenario(r) for r in report["scenarios"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]], classes: list[list[str]] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = classes[i] if classes else [""] * len(row)
        body.append("<tr>" + "".join(f"<td class=\"{c}\">{escape(v)}</td>" if c else f"<td>{escape(v)}</td>"
                                     for v, c in zip(row, css, strict=True)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_metrics(report: dict[str, Any]) -> str:
    classes = report["scorecard"]["classes"]
    rows, css = [], []
    for key, label, zero, cells in metric_rows(report):
        rows.append([label + (" (must be 0)" if zero else ""), *cells])
        metric = next(m for m in METRICS if m.key == key)
        marks = [""]
        for c in classes:
            s = classes[c][key]
            if s.get("rate") is None:
                marks.append("")
            elif metric.better == "lower":
                marks.append("bad" if s["rate"] > 0 else "good")
            else:
                marks.append("good" if s["rate"] >= 1 else "bad")
        css.append(marks)
    return _html_table(["metric", *classes], rows, css)


def _html_baseline(baseline: dict[str, Any]) -> str:
    metrics = [c for c in baseline["changes"] if c["group"] != "scenario"]
    rows = [[("regression: " if c["regression"] else "") + c["group"], c["label"], _pct(c["baseline"]),
             _pct(c["now"])] for c in metrics]
    css = [["bad" if c["regression"] else "", "", "", ""] for c in metrics]
    regressions = sum(1 for c in baseline["changes"] if c["regression"])
    failing = [c["metric"] for c in baseline["changes"] if c["group"] == "scenario"]
    table = _html_table(["where", "metric", "baseline", "now"], rows, css)
    table = table.replace("<table>", "<table class=\"diff\">", 1)
    out = (f"<h2>Compared with the baseline</h2><p>{escape(baseline['file'])}: {regressions} regression(s).</p>"
           + (table if rows else ""))
    if failing:
        out += (f"<p>Scenarios that passed in the baseline and now fail ({len(failing)}): "
                f"{escape(', '.join(failing))}.</p>")
    return out


def _html_scenario(r: dict[str, Any]) -> str:
    e = escape
    status = "<span class=\"pass\">pass</span>" if r["passed"] else "<span class=\"fail\">fail</span>"
    head = (f"<summary>{status} {e(r['id'])} <span class=\"small\">[{e(r['class'])}, {e(r['lang'])}, "
            f"run {int(r['repeat']) + 1}]</span> {e(r['title'])}</summary>")
    fails = "".join(f"<li>{e(x)}</li>" for x in r["failures"])
    rows = []
    for t in r["turns"]:
        events = ", ".join(ev["kind"] + (f" ({ev['category']})" if ev.get("category") else "")
                           + (f" [{ev['reason']}]" if ev.get("reason") else "") for ev in t["events"])
        refused = "; ".join(t["refused_ends"])
        rows.append(f"<tr><td>{int(t['turn'])}</td><td>{e(t['action'])}/{e(t['kind'])}</td><td>{e(t['text'])}</td>"
                    f"<td>{e(events or '-')}</td><td>{e(refused or '-')}</td><td>{int(t['model_calls'])}</td></tr>")
    table = ("<table class=\"turns\"><thead><tr><th>#</th><th>member</th><th>text</th><th>engine events</th>"
             "<th>end attempts refused</th><th>model calls</th></tr></thead><tbody>" + "".join(rows)
             + "</tbody></table>")
    return f"<details>{head}{f'<ul>{fails}</ul>' if fails else ''}{table}</details>"


def chart_svg(report: dict[str, Any]) -> str:
    """Per class: the share of runs that passed (green) and failed (red), as horizontal bars."""
    classes = report["scorecard"]["classes"]
    names = list(classes)
    bar_w, left, row_h = 560, 130, 26
    height = 40 + row_h * len(names)
    out = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{left + bar_w + 120}\" height=\"{height}\" "
           "role=\"img\" aria-label=\"Scenarios passed per class\">",
           "<text x=\"0\" y=\"16\" font-size=\"14\" font-weight=\"600\">Scenarios passed per class</text>"]
    for i, name in enumerate(names):
        s = classes[name]["passed"]
        passed, total = sum(s["count"]), sum(s["of"])
        share = passed / total if total else 0.0
        y = 30 + i * row_h
        good = round(bar_w * share)
        out.append(f"<text x=\"0\" y=\"{y + 15}\" font-size=\"13\">{escape(name)}</text>")
        out.append(f"<rect x=\"{left}\" y=\"{y}\" width=\"{good}\" height=\"18\" fill=\"#2da44e\"/>")
        out.append(f"<rect x=\"{left + good}\" y=\"{y}\" width=\"{bar_w - good}\" height=\"18\" fill=\"#cf222e\"/>")
        out.append(f"<text x=\"{left + bar_w + 8}\" y=\"{y + 14}\" font-size=\"13\">{passed}/{total} "
                   f"({share * 100:.0f}%)</text>")
    out.append("</svg>")
    return "".join(out)
