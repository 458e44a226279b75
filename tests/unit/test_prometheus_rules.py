"""deploy/prometheus/ and deploy/grafana/: the rules pass `promtool check rules` and their own `promtool test rules`
(each alert both tripped and not), those tests fail when an alert is broken, and the dashboard shows what it must.
Whether every name they use is on a running service's /metrics is tests/integration/test_metrics_names.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring import (
    DASHBOARD_FILE,
    RULES_FILE,
    RULES_TEST_FILE,
    dashboard,
    dashboard_expressions,
    raw_uses,
    recorded,
    rule_expressions,
    rules,
    uses,
)

ALERTS = (
    "MultichannelConsumerLagGrowing",
    "MultichannelPartitionStalled",
    "MultichannelDeadLetterRateHigh",
    "MultichannelDeadLetters",
    "MultichannelNotReady",
    "MultichannelRestoreSlow",
    "MultichannelRestarting",
    "MultichannelTransactionAborts",
    "MultichannelTransactionsSlow",
)
PANELS = (
    "Input events per second",
    "Consumer lag per partition",
    "Batch phases (p99)",
    "Decisions by kind",
    "Dead letters by reason",
    "Restore time",
    "Readiness per instance",
)


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `bash deploy/local/promtool.sh` (as root it installs it; make test does)"
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def _with_alert(tmp_path: Path, alert: str, expr: str) -> Path:
    """A copy of the rules and their tests in `tmp_path`, with `alert`'s expression replaced; the test file's path."""
    doc = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    found = [rule for group in doc["groups"] for rule in group["rules"] if rule.get("alert") == alert]
    assert len(found) == 1
    found[0]["expr"] = expr
    (tmp_path / RULES_FILE.name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES_TEST_FILE, tmp_path / "tests" / RULES_TEST_FILE.name)
    return tmp_path / "tests" / RULES_TEST_FILE.name


def _alert_expr(alert: str) -> str:
    return next(str(rule["expr"]) for rule in rules() if rule.get("alert") == alert)


def test_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts the rules file and counts every rule in it."""
    result = _promtool("check", "rules", RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_check_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check is real: an expression that is not PromQL makes `promtool check rules` fail."""
    test_file = _with_alert(tmp_path, "MultichannelNotReady", "multichannel_ready ==")
    result = _promtool("check", "rules", test_file.parent.parent / RULES_FILE.name)
    assert result.returncode != 0


def test_rules_pass_their_promtool_unit_tests() -> None:
    """`promtool test rules` passes: each alert fires on the series meant to trip it, and only on those."""
    result = _promtool("test", "rules", RULES_TEST_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_cover_every_alert_the_operations_need() -> None:
    """Lag growing, a stalled partition, dead letters, not ready, slow restore, restarts (exits, fencing), aborts and
    slow transactions each have an alert with a severity, a summary and a description."""
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) == set(ALERTS)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


@pytest.mark.parametrize("alert", ALERTS)
def test_an_alert_that_never_fires_fails_the_rule_tests(alert: str, tmp_path: Path) -> None:
    """Each alert has a test that needs it to fire: with an expression that is never true, `promtool test` fails."""
    result = _promtool("test", "rules", _with_alert(tmp_path, alert, "vector(1) == 0"))
    assert result.returncode != 0, f"no test of {alert} expects it to fire"


@pytest.mark.parametrize("alert", ALERTS)
def test_an_alert_without_its_threshold_fails_the_rule_tests(alert: str, tmp_path: Path) -> None:
    """Each alert has series that must not trip it: with every comparison loosened to `>= 0`, `promtool test` fails."""
    loosened, count = re.subn(r"(>=|<=|==|>|<)\s*[0-9.]+", ">= 0", _alert_expr(alert))
    assert count >= 1, alert
    result = _promtool("test", "rules", _with_alert(tmp_path, alert, loosened))
    assert result.returncode != 0, f"no test of {alert} has series below its threshold"


def test_every_recording_rule_is_tested() -> None:
    """Each recorded series has its value checked by a promtool test, or feeds an alert that the tests trip."""
    tests_text = RULES_TEST_FILE.read_text(encoding="utf-8")
    for name in recorded():
        checked = f"expr: {name}" in tests_text or any(name in uses(_alert_expr(a)).names for a in ALERTS)
        assert checked, f"{name} has no test"


def test_the_reader_finds_metric_names_and_refuses_unknown_calls() -> None:
    """The PromQL reader returns names and matched labels, skips functions, keywords, durations and variables,
    and refuses a call of a function PromQL does not have."""
    found = uses(
        'sum by (job) (rate(a_total{x="1", y=~"$v|w"}[$__rate_interval])) / on(job) group_left b offset 10m > 0.5'
    )
    assert found.names == {"a_total", "b"}
    assert found.matched == {"a_total": {"x", "y"}}
    assert found.grouped == {"job"}
    with pytest.raises(ValueError, match="rte"):
        uses("rte(a_total[5m])")


def test_rules_and_dashboard_name_enough_metrics_to_check() -> None:
    """The rules and the dashboard read at least 18 distinct metric series names, so the /metrics check has
    something to check (a reader that found nothing would pass it silently)."""
    names: set[str] = set()
    for _where, expr in [*rule_expressions(), *dashboard_expressions()]:
        names |= raw_uses(expr).names
    assert len(names) >= 18, sorted(names)
    assert all(name.startswith("multichannel_") for name in names), sorted(names)


def test_dashboard_shows_throughput_lag_phases_decisions_dead_letters_restore_readiness() -> None:
    """The Grafana dashboard is JSON with unique panel ids and no overlapping panels, every query on the datasource
    variable and filtered by the `job` variable, and a panel for each thing operations watch."""
    doc = dashboard()
    panels = doc["panels"]
    titles = [p["title"] for p in panels]
    assert set(PANELS) <= set(titles)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells, f"{p['title']} overlaps another panel"
        assert g["x"] + g["w"] <= 24
        cells |= area
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for target in p["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", p["title"]
            assert 'job=~"$job"' in target["expr"], p["title"]
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "job"}
    assert DASHBOARD_FILE.read_text(encoding="utf-8").endswith("}\n")
