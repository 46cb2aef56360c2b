"""The load scenarios: start the server(s), drive k6, then write results/<scenario>/report.md with plots.

Each scenario is bounded by its k6 durations and stops the servers it started, whatever happens.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from . import k6, payloads, report, servers
from .sampler import Sampler

ROOT = servers.ROOT
MODEL = servers.MODEL


class Run:
    """Shared state of one invocation: options, output folder, payloads."""

    def __init__(self, args, scenario: str, command: str):
        self.args, self.scenario, self.command = args, scenario, command
        self.out = Path(args.results) / scenario
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        self.model_dir = Path(args.model_repository) / MODEL
        self._tmp = tempfile.TemporaryDirectory(prefix="oxinfer-load-")
        self.tmp = Path(self._tmp.name)
        self.payloads = payloads.prepare(self.tmp / "payload", self.model_dir)
        self.load_before = os.getloadavg()

    def close(self) -> None:
        self._tmp.cleanup()

    def budgets(self) -> dict[str, str]:
        a = self.args
        return {"P95_MS": str(a.p95_ms), "P99_MS": str(a.p99_ms), "MAX_ERROR_RATE": str(a.max_error_rate)}

    def oxinfer(self, repo: Path | None = None, mode: str = "none", extra: list[str] | None = None):
        return servers.oxinfer(self.out, repo or Path(self.args.model_repository), Path(self.args.binary), mode, extra)


# ---------------------------------------------------------------------------------------------- helpers

def probe(kind: str):
    def ok(server: servers.Server) -> bool:
        if kind == "v2_json":
            r = requests.post(server.url + server.infer_path, data=_tiny_v2(), timeout=30,
                              headers={"Content-Type": "application/json"})
        else:
            photo = payloads.photo_dir() / "coffee.png"
            r = requests.post(server.url + server.predict_path, data=photo.read_bytes(), timeout=30,
                              headers={"Content-Type": "image/png"})
        return r.status_code == 200
    return ok


def _tiny_v2() -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                   "data": [0.0] * (3 * 224 * 224)}]}).encode()


def warm_up(server: servers.Server, run: Run, n: int = 8) -> None:
    """A few requests of each kind, so first-call costs (lazy init, allocators) stay out of the figures."""
    for kind in server.kinds:
        for _ in range(n):
            if kind == "image":
                probe("image")(server)
            elif kind == "v2_json":
                requests.post(server.url + server.infer_path, data=run.payloads.v2_json.read_bytes(),
                              headers={"Content-Type": "application/json"}, timeout=60)
            else:
                requests.post(server.url + server.infer_path, data=run.payloads.v2_binary.read_bytes(), timeout=60,
                              headers={"Content-Type": "application/octet-stream",
                                       "Inference-Header-Content-Length": str(run.payloads.header_length)})


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def k6_version() -> str:
    try:
        return subprocess.run([k6.k6_binary(), "version"], capture_output=True, text=True).stdout.strip().split("\n")[0]
    except (OSError, FileNotFoundError):
        return "k6 ?"


def server_version(url: str) -> str:
    try:
        meta = requests.get(f"{url}/v2", timeout=5).json()
        return f"{meta.get('name', '?')} {meta.get('version', '?')}"
    except (requests.RequestException, ValueError):
        return "?"


def header(run: Run, title: str, server: servers.Server | None) -> list[str]:
    lines = [f"# {title}", "",
             f"- Command: `{run.command}`",
             f"- Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"- Machine: {machine()} (k6 runs on the same machine and shares its CPUs)",
             f"- Load generator: {k6_version()}",
             "- Machine load average before the run (1/5/15 min): "
             + " / ".join(f"{x:.2f}" for x in run.load_before) + " (other work on the machine skews the figures)"]
    if server is not None:
        lines.append(f"- Server: {server.version} — `{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(server.cmd))}`")
    return lines + [""]


def summary_table(rows: list[tuple[str, dict]], first: str = "run") -> str:
    return report.table(
        [first, "requests", "errors", "error rate", "throughput (req/s)", "p50 (ms)", "p95 (ms)", "p99 (ms)", "max (ms)"],
        [[name, s["requests"], s["errors"], f"{100 * s['error_rate']:.2f}%", s["throughput"], s["p50"], s["p95"],
          s["p99"], s["max"]] for name, s in rows])


def thresholds_line(result: k6.K6Result) -> str:
    if result.returncode == 0:
        return "Thresholds: **PASS** (k6 exit code 0)"
    if result.returncode == k6.THRESHOLDS_FAILED:
        return "Thresholds: **FAIL** (k6 exit code 99: a latency or error budget was exceeded; see the k6 output)"
    return f"Thresholds: **ERROR** (k6 exit code {result.returncode}; see {result.stdout.name})"


def k6_tail(result: k6.K6Result, lines: int = 40) -> str:
    text = result.stdout.read_text(errors="replace").strip().splitlines() if result.stdout.exists() else []
    return "```\n" + "\n".join(text[-lines:]) + "\n```"


def resources_lines(resources: Path) -> list[str]:
    r = report.resource_summary(resources)
    if not r:
        return []
    line = (f"Server resources: RSS {r['rss_start_mib']:.0f} MiB at start, {r['rss_end_mib']:.0f} MiB at the end, "
            f"{r['rss_max_mib']:.0f} MiB max; mean CPU {r['cpu_cores']:.2f} cores")
    if r.get("inflight_max") is not None:
        line += f"; max in-flight requests (oxinfer_inflight_requests) {r['inflight_max']:.0f}"
    return [line + ".", ""]


def images(paths) -> list[str]:
    return [f"![{p.stem}]({p.name})" for p in paths if p] + [""]


def run_server(server: servers.Server, run: Run) -> servers.Server:
    """Starts a server, waits for a real inference to succeed, records its version and warms it up."""
    server.start()
    try:
        server.ready(probe("v2_json" if "image" not in server.kinds else "image"))
        server.version = server_version(server.url)
        warm_up(server, run)
    except Exception:
        server.stop()
        raise
    return server


# ---------------------------------------------------------------------------------------------- scenarios

SIMPLE = {
    "predict": ("predict_image.js", "Image prediction (/v1/models/{m}:predict, real photos)"),
    "v2-binary": ("v2_binary.js", "V2 inference, binary tensor extension"),
    "v2-json": ("v2_json.js", "V2 inference, JSON tensor"),
    "capacity": ("capacity.js", "Capacity: ramping arrival rate"),
    "soak": ("soak.js", "Soak: constant arrival rate, mixed traffic"),
    "sweep": ("sweep.js", "Concurrency sweep"),
}


def simple(run: Run) -> int:
    """One oxinfer, one k6 script."""
    a = run.args
    script, title = SIMPLE[run.scenario]
    env = {**run.payloads.k6_env(), **run.budgets(), "MODEL": MODEL}
    if run.scenario in ("predict", "v2-binary", "v2-json"):
        env.update(VUS=str(a.vus), DURATION=a.duration)
    elif run.scenario == "capacity":
        env.update(KIND=a.kind, START_RATE=str(a.start_rate), MAX_RATE=str(a.max_rate), RAMP_DURATION=a.ramp,
                   HOLD_DURATION=a.hold, MAX_VUS=str(a.max_vus))
        title += f" {a.start_rate}→{a.max_rate} req/s ({a.kind})"
    elif run.scenario == "soak":
        env.update(RATE=str(a.rate), DURATION=a.duration)
        title += f" at {a.rate} req/s for {a.duration}"
    elif run.scenario == "sweep":
        env.update(KIND=a.kind, CONCURRENCY=a.concurrency, STEP=a.step)
        title += f" ({a.kind}, concurrency {a.concurrency}, {a.step} each)"

    server = None
    if a.url:
        env.update(BASE_URL=a.url)
    else:
        server = run_server(run.oxinfer(), run)
        env.update(server.k6_env())
    sampler = Sampler(server.proc.pid, run.out / "resources.csv", f"{server.url}/metrics") if server else None
    try:
        if sampler:
            sampler.start()
        result = k6.run(script, run.out, env)
    finally:
        try:
            if sampler:
                sampler.stop()
        finally:
            if server:
                server.stop()

    samples = report.load(result.samples)
    lines = header(run, title, server)
    lines += [thresholds_line(result), ""]
    if run.scenario == "sweep":
        rows = [(sc, report.summarize(samples, np.asarray([x == sc for x in samples.scenario]), _seconds(a.step)))
                for sc in sorted(set(samples.scenario))]
        lines += [summary_table([(f"concurrency {int(sc[1:])}", s) for sc, s in rows], "step"), ""]
    else:
        lines += [summary_table([(run.scenario, report.summarize(samples))]), ""]
    if samples.dropped:
        lines += [f"Dropped iterations (arrivals k6 could not start: the server was saturated): {samples.dropped}", ""]
    lines += resources_lines(run.out / "resources.csv")
    plots = report.plot_over_time(samples, run.out, title)
    plots.append(report.plot_vs_concurrency(samples, run.out, title))
    plots.append(report.plot_resources(run.out / "resources.csv", samples.t0, run.out, title))
    lines += images(plots)
    lines += ["k6 output (end):", "", k6_tail(result), ""]
    (run.out / "report.md").write_text("\n".join(lines))
    print(f"{run.scenario}: {result.returncode=} report {run.out / 'report.md'}")
    return 0 if result.returncode == 0 else 1


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for u in ("ms", "s", "m", "h"):
        if duration.endswith(u) and duration[: -len(u)].replace(".", "").isdigit():
            return float(duration[: -len(u)]) * units[u]
    return float(duration)


def single_model_repo(run: Run, name: str) -> Path:
    """A repository with only the compared model, version 1: other models would take memory and CPU."""
    repo = run.tmp / name
    (repo / MODEL).mkdir(parents=True)
    for item in run.model_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, repo / MODEL / item.name)
    shutil.copytree(run.model_dir / "1", repo / MODEL / "1")
    return repo


def version_swap(run: Run) -> int:
    """New version folder (poll mode) or repository load API (explicit mode) while load runs."""
    a = run.args
    repo = single_model_repo(run, "repo")
    extra = ["--poll-interval-secs", "1"] if a.swap_mode == "poll" else []
    server = run.oxinfer(repo, a.swap_mode, extra).start()
    events, swap_info = [], {}
    sampler = Sampler(server.proc.pid, run.out / "resources.csv", f"{server.url}/metrics")
    try:
        if a.swap_mode == "explicit":
            _wait_then_load(server)
        server.ready(probe("image"))
        server.version = server_version(server.url)
        warm_up(server, run)
        env = {**run.payloads.k6_env(json_outputs=True), **run.budgets(), "MODEL": MODEL, **server.k6_env(),
               "VUS": str(a.vus), "DURATION": a.duration, "NEW_VERSION": "2", "MAX_ERROR_RATE": "0"}
        sampler.start()
        proc, result = k6.start("version_swap.js", run.out, env)
        try:
            time.sleep(a.swap_at)
            staging = run.tmp / "staging" / "2"
            shutil.copytree(run.model_dir / "1", staging)
            swap_time = time.time()
            os.rename(staging, repo / MODEL / "2")  # one rename: the server never sees a half-copied folder
            if a.swap_mode == "explicit":
                r = requests.post(f"{server.url}/v2/repository/models/{MODEL}/load", timeout=120)
                swap_info["load API"] = f"HTTP {r.status_code} after {time.time() - swap_time:.2f} s"
        except BaseException:
            proc.terminate()
            raise
        finally:
            result = k6.wait(proc, result)
    finally:
        try:
            sampler.stop()
        finally:
            server.stop()

    samples = report.load(result.samples)
    t_swap = swap_time - samples.t0
    events.append((t_swap, "version 2 added"))
    new = [t for t, v in samples.versions if v == "2"]
    old = [t for t, v in samples.versions if v == "1"]
    if new:
        events.append((min(new), "first answer from v2"))
    window = (samples.t >= t_swap - 2) & (samples.t <= (max(old) if old else t_swap) + 2)
    before = samples.t < t_swap
    lines = header(run, f"Version swap under load ({a.swap_mode} mode)", server)
    lines += [thresholds_line(result), "",
              summary_table([("whole run", report.summarize(samples)),
                             ("before the swap", report.summarize(samples, before)),
                             ("around the swap", report.summarize(samples, window))]), "",
              f"- Version 2 added at t = {t_swap:.1f} s" + (f" ({swap_info['load API']})" if swap_info else ""),
              f"- First answer from version 2 at t = {min(new):.1f} s ({min(new) - t_swap:.2f} s after)" if new
              else "- **Version 2 never answered**",
              f"- Last answer from version 1 at t = {max(old):.1f} s" if old else "- No answer from version 1",
              "- Answers by version: " + ", ".join(f"v{v}: {sum(1 for _, x in samples.versions if x == v)}"
                                                    for v in sorted({v for _, v in samples.versions})),
              f"- Failed requests during the whole run: {int((~samples.ok).sum())}", ""]
    lines += resources_lines(run.out / "resources.csv")
    plots = report.plot_over_time(samples, run.out, "Version swap", events)
    plots.append(report.plot_versions(samples, run.out, events))
    plots.append(report.plot_resources(run.out / "resources.csv", samples.t0, run.out, "Version swap"))
    lines += images(plots) + ["k6 output (end):", "", k6_tail(result), ""]
    (run.out / "report.md").write_text("\n".join(lines))
    print(f"version-swap: {result.returncode=} report {run.out / 'report.md'}")
    ok = result.returncode == 0 and bool(new) and not (~samples.ok).any()
    return 0 if ok else 1


def _wait_then_load(server: servers.Server, timeout: float = 60) -> None:
    """Explicit mode may start with nothing loaded: load the model once the server answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(f"{server.url}/v2/health/live", timeout=2).raise_for_status()
            requests.post(f"{server.url}/v2/repository/models/{MODEL}/load", timeout=120).raise_for_status()
            return
        except requests.RequestException:
            time.sleep(0.5)
    raise TimeoutError("explicit mode: could not load the model")


def peers(run: Run) -> int:
    """The same sweep against oxinfer and each peer, one server at a time on the same machine."""
    a = run.args
    venv = Path(a.peers_venv)
    ml_venv = Path(a.mlserver_venv)
    factories = {
        "oxinfer": lambda: run.oxinfer(single_model_repo(run, "repo-peers")),
        "fastapi": lambda: servers.fastapi(run.out, run.model_dir, venv, a.peer_workers, a.peer_threads),
        "torchserve-onnx": lambda: servers.torchserve(run.out, run.model_dir, venv, "onnx", a.peer_workers,
                                                      a.peer_threads),
        "torchserve-torch": lambda: servers.torchserve(run.out, run.model_dir, venv, "torch", a.peer_workers,
                                                       a.peer_threads),
        "mlserver": lambda: servers.mlserver(run.out, run.model_dir, ml_venv, a.peer_workers, a.peer_threads),
    }
    names = ["oxinfer"] + [p for p in a.peers.split(",") if p and p != "oxinfer"]
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; known: {', '.join(factories)}")
    kinds = [k for k in a.peer_kinds.split(",") if k]
    step = _seconds(a.step)
    results: dict[tuple[str, str], dict[int, dict]] = {}
    notes, failures = {}, []
    for name in names:
        try:
            server = factories[name]()
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            failures.append(f"{name}: could not be set up ({e})")
            continue
        notes[name] = server.notes
        todo = [k for k in kinds if k in server.kinds]
        if not todo:
            continue
        try:
            run_server(server, run)
        except Exception as e:  # a peer that does not start is reported, not fatal
            failures.append(f"{name}: did not start ({e})")
            server.stop()
            continue
        if name == "oxinfer":
            notes[name] = (f"{server.version}, dynamic batching and threads as set in the model's "
                           "config.toml (defaults derived from the CPU count)")
        sampler = Sampler(server.proc.pid, run.out / f"{name}.resources.csv")
        sampler.start()
        try:
            for kind in todo:
                env = {**run.payloads.k6_env(), **server.k6_env(), "MODEL": MODEL, "KIND": kind,
                       "CONCURRENCY": a.concurrency, "STEP": a.step, "MAX_ERROR_RATE": str(a.max_error_rate)}
                result = k6.run("sweep.js", run.out, env, tag=f"{name}.{kind}")
                samples = report.load(result.samples)
                per_level = {}
                for sc in sorted(set(samples.scenario)):
                    mask = np.asarray([x == sc for x in samples.scenario])
                    summary = report.summarize(samples, mask, step)
                    t = samples.t[mask] + samples.t0
                    cpu = report.cpu_seconds_between(run.out / f"{name}.resources.csv", t.min(), t.max())
                    ok = int((samples.ok & mask).sum())
                    summary["cpu_ms_per_request"] = 1000 * cpu / ok if ok else math.nan
                    per_level[int(sc[1:])] = summary
                results[(name, kind)] = per_level
                if result.returncode not in (0, k6.THRESHOLDS_FAILED):
                    failures.append(f"{name} {kind}: k6 exit code {result.returncode}")
        finally:
            try:
                sampler.stop()
            finally:
                server.stop()
        cpu = report.resource_summary(run.out / f"{name}.resources.csv")
        if cpu:
            notes[name] += f"; RSS max {cpu['rss_max_mib']:.0f} MiB"

    lines = header(run, "oxinfer and its peers, same model, photos and load", None)
    lines += ["Each server runs alone on the machine with the same model file, preprocessing recipe and requests; "
              f"k6 sweeps closed-loop concurrency {a.concurrency}, {a.step} per step. "
              "Throughput counts successful responses per second. Server CPU per request is the CPU time of the "
              "server's whole process tree (workers included) during the step divided by the requests it served: "
              "the efficiency figure, and the one least disturbed by other load on the machine.", ""]
    lines += [f"- **{n}**: {notes[n]}" for n in notes] + [""]
    for kind in kinds:
        rows = []
        for name in names:
            for conc, s in sorted(results.get((name, kind), {}).items()):
                base = results.get(("oxinfer", kind), {}).get(conc)
                ratio = base["throughput"] / s["throughput"] if base and s["throughput"] > 0 else math.nan
                rows.append([name, conc, s["throughput"], s["p50"], s["p99"], f"{100 * s['error_rate']:.2f}%",
                             s["cpu_ms_per_request"],
                             "1.00" if name == "oxinfer" else (f"{ratio:.2f}x" if not math.isnan(ratio) else "n/a")])
        if not rows:
            continue
        lines += [f"## {kind} requests", "",
                  report.table(["server", "concurrency", "throughput (req/s)", "p50 (ms)", "p99 (ms)", "errors",
                                "server CPU per request (ms)", "oxinfer throughput / this"], rows), ""]
        lines += images([_plot_peers(results, kind, names, run.out)])
    if failures:
        lines += ["## Not measured", ""] + [f"- {f}" for f in failures] + [""]
    (run.out / "report.md").write_text("\n".join(lines))
    print(f"peers: report {run.out / 'report.md'}")
    return 0 if results else 1


def _plot_peers(results, kind: str, names: list[str], out: Path) -> Path | None:
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    drawn = False
    for name in names:
        data = results.get((name, kind))
        if not data:
            continue
        conc = sorted(data)
        a1.plot(conc, [data[c]["throughput"] for c in conc], marker="o", label=name)
        a2.plot(conc, [data[c]["p99"] for c in conc], marker="o", label=name)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    a1.set_xlabel("concurrency")
    a1.set_ylabel("requests/s")
    a2.set_xlabel("concurrency")
    a2.set_ylabel("p99 latency (ms)")
    a2.set_yscale("log")
    a1.legend()
    fig.suptitle(f"{kind} requests: throughput and p99 against concurrency")
    fig.tight_layout()
    path = out / f"peers_{kind}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
