"""The PromQL of deploy/prometheus/ and deploy/grafana/, read for the metric names and labels it uses.

A small reader, not a parser: selectors give a name and its matched labels, grouping clauses (`by`, `on`, ...)
the labels an aggregation needs, and every other identifier is a function (it is followed by `(`), a keyword,
or a metric name. An identifier followed by `(` that is no PromQL function raises, so a typo cannot hide as a
"function" and let a check pass with nothing to check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR: Final = ROOT / "deploy" / "prometheus"
RULES_FILE: Final = PROMETHEUS_DIR / "multichannel-rules.yaml"
RULES_TEST_FILE: Final = PROMETHEUS_DIR / "tests" / "multichannel-rules.test.yaml"
DASHBOARD_FILE: Final = ROOT / "deploy" / "grafana" / "multichannel-dashboard.json"

FUNCTIONS: Final = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_quantile",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "time",
        "timestamp",
        "vector",
        "year",
        "label_values",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ]
)
KEYWORDS: Final = frozenset(
    [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
    ]
)
TARGET_LABELS: Final = frozenset({"job", "instance"})
"""Labels that Prometheus adds at scrape time: never on /metrics itself."""

_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


@dataclass
class Uses:
    """The metric names an expression reads, the labels it matches on each, and the labels its groupings need."""

    names: set[str] = field(default_factory=set)
    matched: dict[str, set[str]] = field(default_factory=dict)
    grouped: set[str] = field(default_factory=set)


def uses(expr: str) -> Uses:
    """What `expr` reads; ValueError for a call of something that is no PromQL function."""
    out = Uses()
    text = expr
    for m in _SELECTOR.finditer(_STRING.sub('""', text)):
        labels = set(_MATCHER.findall(m.group(2))) - {"__name__"}
        if m.group(1) and m.group(1) not in KEYWORDS:
            out.matched.setdefault(m.group(1), set()).update(labels)
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    for m in _GROUPING.finditer(text):
        out.grouped.update(label.strip() for label in m.group(2).split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    for m in _IDENT.finditer(text):
        word, call = m.group(1), m.group(2)
        if word in KEYWORDS:
            continue
        if call:
            if word not in FUNCTIONS:
                raise ValueError(f"{word}( is no PromQL function, in: {expr}")
        else:
            out.names.add(word)
    return out


def rules() -> list[dict[str, Any]]:
    """Every rule of the rules file, recording and alerting."""
    doc = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def recorded() -> dict[str, str]:
    """Recording rule name → its expression."""
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def rule_expressions() -> Iterator[tuple[str, str]]:
    """(rule name, expression) of every rule."""
    for rule in rules():
        yield rule.get("record") or rule["alert"], rule["expr"]


def _dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _dashboard_panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every query of the dashboard, its template variables' queries included."""
    doc = dashboard()
    for panel in _dashboard_panels(doc["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in doc["templating"]["list"]:
        if variable["type"] == "query":  # label_values(metric, label): the metric, grouped by the label
            m = re.fullmatch(r"label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)", variable["definition"])
            if m is None:
                raise ValueError(f"variable {variable['name']}: not label_values(metric, label)")
            yield f"variable {variable['name']}", f"group by ({m.group(2)}) ({m.group(1)})"


def raw_uses(expr: str) -> Uses:
    """`uses` with recorded series replaced by what their rules read, recursively (their labels come from there)."""
    records = recorded()
    out = uses(expr)
    pending = [name for name in out.names if name in records]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        inner = uses(records[name])
        out.names |= inner.names
        for metric, labels in inner.matched.items():
            out.matched.setdefault(metric, set()).update(labels)
        pending.extend(n for n in inner.names if n in records)
    out.names -= set(records)
    return out


def promtool_series() -> Iterator[tuple[str, str]]:
    """(test name, series selector) of every input series of the promtool tests."""
    doc = yaml.safe_load(RULES_TEST_FILE.read_text(encoding="utf-8"))
    for case in doc["tests"]:
        for series in case.get("input_series", []):
            yield case["name"], series["series"]


def series_labels(selector: str) -> tuple[str, set[str]]:
    """The name and label names of a promtool series like `name{a="1",b="2"}`."""
    m = re.fullmatch(r"([A-Za-z_:][A-Za-z0-9_:]*)\{(.*)\}", selector.strip())
    if m is None:
        raise ValueError(f"not a series: {selector}")
    return m.group(1), set(_MATCHER.findall(_STRING.sub('""', m.group(2))))
