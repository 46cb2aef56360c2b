"""Turning the measured rows into files: CSV per table, a JSON summary with the derived figures (server/ceiling
ratio, latency overhead at concurrency 1, batching and instance comparisons), a Markdown table, and the plot.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path


def _csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys = [k for k in rows[0] if k != "error_samples"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k in keys})


def _find(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _best(rows: list[dict]) -> dict | None:
    return max(rows, key=lambda r: r["images_per_s"], default=None)


def _better_run(rows: list[dict]) -> list[dict]:
    """Per batch size, the run with the higher throughput: the ceiling is what the machine could do at best."""
    best: dict[int, dict] = {}
    for r in rows:
        if r["batch"] not in best or r["images_per_s"] > best[r["batch"]]["images_per_s"]:
            best[r["batch"]] = r
    return [best[b] for b in sorted(best)]


def derive(ceiling: list[dict], rows: list[dict], meta: dict) -> dict:
    c1 = _better_run(_find(ceiling, instances_cfg=1))
    c2 = _better_run(_find(ceiling, instances_cfg=2))
    ceil_best = _best(c1)
    ceil_b1 = next(iter(_find(c1, batch=1)), None)
    out: dict = {
        "ceiling_best": {k: ceil_best[k] for k in ("batch", "images_per_s", "p50_ms", "p99_ms")} if ceil_best else None,
        "ceiling_batch1": {k: ceil_b1[k] for k in ("images_per_s", "p50_ms", "p99_ms")} if ceil_b1 else None,
        "ceiling_drift": _drift(ceiling),
        "ceiling_best_2_instances": {k: _best(c2)[k] for k in ("batch", "images_per_s")} if c2 else None,
        "saturation": {},
        "concurrency_1": {},
        "concurrency_16": {},
    }
    for cfg in sorted({r["config"] for r in rows}):
        for proto in sorted({r["protocol"] for r in _find(rows, config=cfg)}):
            sel = _find(rows, config=cfg, protocol=proto)
            key = f"{cfg}/{proto}"
            best = _best(sel)
            out["saturation"][key] = {
                "images_per_s": best["images_per_s"],
                "at_concurrency": best["concurrency"],
                "mean_batch": best["mean_batch"],
                "ratio_to_ceiling": best["images_per_s"] / ceil_best["images_per_s"] if ceil_best else None,
                "server_cores": best["server_cores"],
                "http_cores": best["http_cores"],
                "http_cpu_ms_per_req": best["http_cpu_ms_per_req"],
                "client_cores": best["client_cores"],
                "other_cores": best["other_cores"],
            }
            for c, bucket in ((1, "concurrency_1"), (16, "concurrency_16")):
                r = next(iter(_find(sel, concurrency=c)), None)
                if r:
                    entry = {"p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"], "p99_ms": r["p99_ms"], "images_per_s": r["images_per_s"],
                             "mean_ms": r["mean_ms"], "server_ms": r["server_ms"], "queue_ms": r["queue_ms"], "compute_ms": r["compute_ms"]}
                    if c == 1 and ceil_b1:
                        entry["p50_minus_ceiling_batch1_ms"] = r["p50_ms"] - ceil_b1["p50_ms"]
                    out[bucket][key] = entry
    out["paired"] = {}
    # One figure per (configuration, form, kind, concurrency): two forms often peak at the same concurrency.
    for group in sorted({(p["config"], p["protocol"], p["kind"], p["concurrency"]) for p in meta.get("paired", [])}):
        cfg, proto, kind, conc = group
        sel = [p for p in meta["paired"] if (p["config"], p["protocol"], p["kind"], p["concurrency"]) == group]
        out["paired"][f"{cfg}/{proto}/{kind}/c{conc}"] = {
            "concurrency": conc,
            "kind": kind,
            "ceiling": (f"{sel[0]['ceiling_instances']} instance(s) x {sel[0]['ceiling_threads']} thread(s), "
                        f"batch {sel[0]['ceiling_batch']}"
                        + ("" if kind == "latency" else ", the server's mean batch at this point")),
            "ratio_median": statistics.median(p["ratio"] for p in sel),
            "ratios": [round(p["ratio"], 3) for p in sel],
            "p50_minus_ceiling_p50_ms_median": statistics.median(p["server_p50_ms"] - p["ceiling_p50_ms"] for p in sel),
            "server_p50_ms_median": statistics.median(p["server_p50_ms"] for p in sel),
            "server_p99_ms_median": statistics.median(p["server_p99_ms"] for p in sel),
            "client_cores_mean": sum(p["client_cores"] for p in sel) / len(sel),
            "http_cores_mean": sum(p["http_cores"] for p in sel) / len(sel),
        }
    on = _find(rows, config="batching_on")
    out["rss_mb"] = {
        "idle": meta["servers"].get("batching_on", {}).get("rss_idle_mb"),
        "saturation_max": max((r["rss_max_mb"] for r in on), default=None),
        "per_config_idle": {k: v.get("rss_idle_mb") for k, v in meta["servers"].items()},
        "per_config_max": {cfg: max(r["rss_max_mb"] for r in _find(rows, config=cfg)) for cfg in {r["config"] for r in rows}},
    }
    out["start_to_ready_s"] = {"median": meta["start_to_ready_median_s"], "all": meta["start_to_ready_s"]}
    others = [r["other_cores"] for r in rows]
    out["other_load_cores"] = {"mean": sum(others) / len(others) if others else None, "max": max(others, default=None)}
    return out


def _drift(ceiling: list[dict]) -> dict:
    """End-run throughput relative to the start run, per batch size (1 instance)."""
    start = {r["batch"]: r["images_per_s"] for r in _find(ceiling, instances_cfg=1, run="start")}
    end = {r["batch"]: r["images_per_s"] for r in _find(ceiling, instances_cfg=1, run="end")}
    return {b: end[b] / start[b] - 1.0 for b in start if b in end and start[b]}


def _fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(ceiling: list[dict], rows: list[dict], d: dict, meta: dict) -> str:
    lines = ["## Ceiling (in-process ONNX Runtime, same settings)", "",
             "| run | instances x threads | batch | images/s | p50 ms | p99 ms | cores ceiling/other |",
             "|---|---|---|---|---|---|---|"]
    for r in ceiling:
        lines.append(f"| {r['run']} | {r['instances']} x {r['threads_per_instance']} | {r['batch']} | {_fmt(r['images_per_s'])} | "
                     f"{_fmt(r['p50_ms'], 2)} | {_fmt(r['p99_ms'], 2)} | {r['ceiling_cores']:.2f}/{r['other_cores']:.2f} |")
    lines += ["", "## Server", "",
              "| config | protocol | conc. | images/s | p50 ms | p95 ms | p99 ms | mean ms client/server/queue/compute | mean batch | cores server/client/other | RSS max MiB | errors |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['protocol']} | {r['concurrency']} | {_fmt(r['images_per_s'])} | {_fmt(r['p50_ms'], 2)} | "
            f"{_fmt(r['p95_ms'], 2)} | {_fmt(r['p99_ms'], 2)} | "
            f"{_fmt(r['mean_ms'], 2)}/{_fmt(r['server_ms'], 2)}/{_fmt(r['queue_ms'], 2)}/{_fmt(r['compute_ms'], 2)} | {_fmt(r['mean_batch'])} | "
            f"{r['server_cores']:.2f}/{r['client_cores']:.2f}/{r['other_cores']:.2f} | {_fmt(r['rss_max_mb'], 0)} | {r['errors']} |")
    cb = d["ceiling_best"] or {}
    lines += ["", "## Derived", "",
              f"- Ceiling at saturation: {_fmt(cb.get('images_per_s'))} images/s (batch {cb.get('batch')}); "
              f"batch 1: {_fmt((d['ceiling_batch1'] or {}).get('images_per_s'))} images/s, "
              f"p50 {_fmt((d['ceiling_batch1'] or {}).get('p50_ms'), 2)} ms, p99 {_fmt((d['ceiling_batch1'] or {}).get('p99_ms'), 2)} ms; "
              f"two instances: {_fmt((d['ceiling_best_2_instances'] or {}).get('images_per_s'))} images/s; "
              f"end run vs start run: {', '.join(f'batch {b} {v:+.0%}' for b, v in d['ceiling_drift'].items())}"]
    for k, v in d["saturation"].items():
        lines.append(f"- Saturation {k}: {_fmt(v['images_per_s'])} images/s at concurrency {v['at_concurrency']} "
                     f"(mean batch {_fmt(v['mean_batch'])}), server/ceiling = {_fmt(v['ratio_to_ceiling'], 2)}; "
                     f"HTTP threads {v['http_cores']:.3f} cores ({_fmt(v['http_cpu_ms_per_req'], 3)} ms CPU per request), "
                     f"client {v['client_cores']:.3f} cores")
    for k, v in d["paired"].items():
        if v["kind"] == "latency":
            lines.append(f"- Paired at concurrency 1 {k} (against the ceiling's {v['ceiling']}, measured back to back): "
                         f"server p50 minus ceiling p50, median {_fmt(v['p50_minus_ceiling_p50_ms_median'], 2)} ms; "
                         f"server p50 {_fmt(v['server_p50_ms_median'], 2)} ms, p99 {_fmt(v['server_p99_ms_median'], 2)} ms")
        else:
            lines.append(f"- Paired at saturation {k} (against the ceiling's {v['ceiling']}, measured back to back): "
                         f"server/ceiling median {_fmt(v['ratio_median'], 3)} ({', '.join(f'{x:.3f}' for x in v['ratios'])}); "
                         f"cores taken from ONNX Runtime by the server's HTTP threads {_fmt(v['http_cores_mean'], 3)} "
                         f"and by the client {_fmt(v['client_cores_mean'], 3)}")
    for k, v in d["concurrency_1"].items():
        lines.append(f"- Concurrency 1 {k}: p50 {_fmt(v['p50_ms'], 2)} ms, p99 {_fmt(v['p99_ms'], 2)} ms, "
                     f"p50 minus ceiling batch-1 p50 = {_fmt(v.get('p50_minus_ceiling_batch1_ms'), 2)} ms; means: client "
                     f"{_fmt(v['mean_ms'], 2)}, in the server {_fmt(v['server_ms'], 2)}, of which queue {_fmt(v['queue_ms'], 2)} "
                     f"and compute {_fmt(v['compute_ms'], 2)} ms")
    for k, v in d["concurrency_16"].items():
        lines.append(f"- Concurrency 16 {k}: p50 {_fmt(v['p50_ms'], 2)} ms, p99 {_fmt(v['p99_ms'], 2)} ms")
    rss = d["rss_mb"]
    lines.append(f"- Resident memory: idle {_fmt(rss['idle'], 0)} MiB, at saturation up to {_fmt(rss['saturation_max'], 0)} MiB "
                 f"(per config idle {json.dumps({k: round(v or 0) for k, v in rss['per_config_idle'].items()})}, "
                 f"max {json.dumps({k: round(v) for k, v in rss['per_config_max'].items()})})")
    sr = d["start_to_ready_s"]
    lines.append(f"- Start to ready: median {_fmt(sr['median'], 2)} s over {len(sr['all'])} starts "
                 f"({', '.join(f'{x:.2f}' for x in sr['all'])})")
    ol = d["other_load_cores"]
    lines.append(f"- Other processes during the server points: mean {_fmt(ol['mean'], 2)} cores, max {_fmt(ol['max'], 2)} cores; "
                 f"load average before {meta['machine_before']['loadavg']}, after {meta['machine_after']['loadavg']}; "
                 f"waited {meta.get('waited_for_quiet_s', 0)} s for quiet spells")
    return "\n".join(lines) + "\n"


def plot(path: Path, ceiling: list[dict], rows: list[dict], d: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(13, 6.2))
    styles = {"batching_on": "-", "batching_off": "--", "instances_2": ":", "threads_1": (0, (3, 1, 1, 1, 1, 1))}
    colors = {"v2_json": "tab:orange", "v2_binary": "tab:blue", "v2_shm": "tab:purple", "image": "tab:green"}
    for cfg in styles:
        for proto in colors:
            sel = sorted(_find(rows, config=cfg, protocol=proto), key=lambda r: r["concurrency"])
            if not sel:
                continue
            x = [r["concurrency"] for r in sel]
            kw = {"linestyle": styles[cfg], "color": colors[proto], "marker": "o", "markersize": 4, "label": f"{proto} ({cfg})"}
            ax_t.plot(x, [r["images_per_s"] for r in sel], **kw)
            ax_l.plot(x, [r["p99_ms"] for r in sel], **kw)
    cb, c1 = d.get("ceiling_best"), d.get("ceiling_batch1")
    if cb:
        ax_t.axhline(cb["images_per_s"], color="black", linewidth=1.2, label=f"ceiling, best batch ({cb['batch']})")
    c2 = d.get("ceiling_best_2_instances")
    if c2 and any(r["config"] == "instances_2" for r in rows):
        ax_t.axhline(c2["images_per_s"], color="black", linewidth=1.0, linestyle=":", label="ceiling, 2 instances, best batch")
    if c1:
        ax_t.axhline(c1["images_per_s"], color="gray", linewidth=1.0, linestyle="-.", label="ceiling, batch 1")
        ax_l.axhline(c1["p99_ms"], color="gray", linewidth=1.0, linestyle="-.", label="ceiling batch 1 p99")
    for ax, title, ylabel in ((ax_t, "Throughput", "images / s"), (ax_l, "p99 latency", "ms (log)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["concurrency"] for r in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax_l.set_yscale("log")
    ax_t.set_ylim(bottom=0)
    # One legend for both panels, below them, so no curve is hidden behind it.
    handles, labels = ax_t.get_legend_handles_labels()
    extra = [(h, l) for h, l in zip(*ax_l.get_legend_handles_labels()) if l not in labels]
    handles += [h for h, _ in extra]
    labels += [l for _, l in extra]
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("oxinfer vs in-process ONNX Runtime (efficientnet_lite0, CPU)")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, ceiling: list[dict], rows: list[dict], meta: dict) -> str:
    derived = derive(ceiling, rows, meta)
    _csv(out / "ceiling.csv", ceiling)
    _csv(out / "server.csv", rows)
    _csv(out / "paired.csv", meta.get("paired", []))
    (out / "summary.json").write_text(json.dumps({"derived": derived, "meta": meta, "ceiling": ceiling, "server": rows},
                                                 indent=2, default=str) + "\n")
    text = markdown(ceiling, rows, derived, meta)
    (out / "summary.md").write_text(text)
    plot(out / "bench.png", ceiling, rows, derived)
    return text
