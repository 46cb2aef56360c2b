"""Turns the Grafana dashboard's panel queries into plain PromQL, so that tests can run them.

Grafana expands template variables ($job, ${model:regex}, $__rate_interval, ...) before it sends a query;
Prometheus alone cannot parse them. The substitutions below use each variable's default, which is what a
fresh dashboard shows, so a query that works here works on first open.

Run as a script it writes the queries as a Prometheus rules file, which `promtool check rules` parses
offline (see monitoring/test.sh).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent / "grafana" / "oxinfer-dashboard.json"

# Grafana's built-in interval variables, at values that work with a few minutes of data.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}

# Series that only kube-state-metrics exports; their panels are empty on a bare server.
KUBE_STATE_METRICS = re.compile(r"\bkube_[a-z_]+")

_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def load(path: Path = DASHBOARD) -> dict:
    return json.loads(Path(path).read_text())


def variable_defaults(dashboard: dict) -> dict[str, str]:
    values = dict(BUILTINS)
    for var in dashboard.get("templating", {}).get("list", []):
        current = var.get("current", {}).get("value")
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else "|".join(current)
        if current in (None, "", "$__all"):
            current = var.get("allValue") or ".*"
        values[var["name"]] = str(current)
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VAR.sub(repl, expr)


def panels(dashboard: dict):
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: dict | None = None) -> list[dict]:
    """Every panel target as {panel, ref, expr, kube_state_metrics}, with variables substituted."""
    dashboard = dashboard or load()
    values = variable_defaults(dashboard)
    out = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = substitute(target["expr"], values)
            out.append({
                "panel": panel.get("title", ""),
                "ref": target.get("refId", ""),
                "expr": expr,
                "kube_state_metrics": bool(KUBE_STATE_METRICS.search(expr)),
            })
    return out


def structure_problems(dashboard: dict) -> list[str]:
    """What Grafana would import but show broken: duplicate ids, overlapping or missing layout, panels with
    no query, queries that name no data source or a variable the dashboard does not define."""
    problems, ids, cells = [], set(), set()
    names = {v["name"] for v in dashboard.get("templating", {}).get("list", [])} | set(BUILTINS)
    for panel in dashboard.get("panels", []):
        title = panel.get("title", "?")
        if panel.get("id") in ids:
            problems.append(f"{title}: duplicate id {panel.get('id')}")
        ids.add(panel.get("id"))
        g = panel.get("gridPos") or {}
        if not all(k in g for k in ("x", "y", "w", "h")) or g["x"] + g["w"] > 24:
            problems.append(f"{title}: bad gridPos {g}")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"{title}: overlaps another panel at x={x}, y={y}")
                    break
                cells.add((x, y))
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        if not panel.get("targets"):
            problems.append(f"{title}: no query")
        for t in panel.get("targets", []):
            if not t.get("expr") or "datasource" not in t:
                problems.append(f"{title}[{t.get('refId')}]: no expr or data source")
            for m in _VAR.finditer(t.get("expr", "")):
                if (m.group(1) or m.group(2)) not in names:
                    problems.append(f"{title}[{t.get('refId')}]: undefined variable {m.group(0)}")
    return problems


def as_rules_file(items: list[dict]) -> dict:
    rules = [{"record": f"dashboard:query_{i}", "expr": q["expr"]} for i, q in enumerate(items)]
    return {"groups": [{"name": "dashboard-queries", "rules": rules}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--rules-file", type=Path, help="write the queries as recording rules (JSON is valid YAML)")
    args = parser.parse_args()
    dashboard = load(args.dashboard)
    problems = structure_problems(dashboard)
    if problems:
        raise SystemExit("dashboard problems:\n  " + "\n  ".join(problems))
    items = queries(dashboard)
    if args.rules_file:
        args.rules_file.write_text(json.dumps(as_rules_file(items), indent=1))
    for q in items:
        print(f"{q['panel']} [{q['ref']}]: {q['expr']}")


if __name__ == "__main__":
    main()
