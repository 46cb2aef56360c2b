#!/usr/bin/env python3
"""One command for every load scenario: starts the server (and the peers), runs k6, writes
loadtest/results/<scenario>/report.md with PNG plots. Durations are short by default; lengthen them
with the flags for real capacity planning.

  .venv/bin/python loadtest/run.py predict            # also: v2-binary v2-json capacity soak sweep
  .venv/bin/python loadtest/run.py version-swap --swap-mode explicit
  .venv/bin/python loadtest/run.py all                # each oxinfer scenario once, short
  .venv/bin/python loadtest/run.py peers              # oxinfer against FastAPI, TorchServe, MLServer
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import scenarios  # noqa: E402

ROOT = HERE.parent
ALL = ["predict", "v2-binary", "v2-json", "capacity", "soak", "version-swap"]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=[*scenarios.SIMPLE, "version-swap", "peers", "all"])
    p.add_argument("--binary", default=str(ROOT / "target" / "release" / "oxinfer"))
    p.add_argument("--model-repository", default=str(ROOT / "model-repo"))
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--url", help="load an already running oxinfer instead of starting one (not for version-swap/peers)")
    g = p.add_argument_group("load")
    g.add_argument("--vus", type=int, default=4, help="concurrent users (closed-loop scenarios)")
    g.add_argument("--duration", default=None, help="run length (default 20s; soak 2m; version-swap 30s)")
    g.add_argument("--kind", default="image", choices=["image", "v2_binary", "v2_json"])
    g.add_argument("--rate", type=int, default=20, help="soak: requests/s")
    g.add_argument("--start-rate", type=int, default=5)
    g.add_argument("--max-rate", type=int, default=120, help="capacity: final arrival rate")
    g.add_argument("--ramp", default="60s", help="capacity: ramp length")
    g.add_argument("--hold", default="10s", help="capacity: time at the final rate")
    g.add_argument("--max-vus", type=int, default=64)
    g.add_argument("--concurrency", default="1,2,4,8", help="sweep and peers: concurrency levels")
    g.add_argument("--step", default="10s", help="sweep and peers: time per level")
    g = p.add_argument_group("budgets (k6 thresholds)")
    g.add_argument("--p95-ms", type=int, default=500)
    g.add_argument("--p99-ms", type=int, default=1000)
    g.add_argument("--max-error-rate", type=float, default=0.01)
    g = p.add_argument_group("version swap")
    g.add_argument("--swap-mode", choices=["poll", "explicit"], default="poll")
    g.add_argument("--swap-at", type=float, default=10.0, help="seconds after the load starts")
    g = p.add_argument_group("peers")
    g.add_argument("--peers", default="fastapi,torchserve-onnx,torchserve-torch,mlserver")
    g.add_argument("--peer-kinds", default="image,v2_json")
    g.add_argument("--peer-workers", type=int, default=2, help="worker processes per peer (one per core)")
    g.add_argument("--peer-threads", type=int, default=1, help="intra-op threads per peer worker")
    g.add_argument("--peers-venv", default=str(ROOT / ".venv-peers"))
    g.add_argument("--mlserver-venv", default=str(ROOT / ".venv-mlserver"))
    args = p.parse_args(argv)
    return args


def default_duration(scenario: str) -> str:
    return {"soak": "2m", "version-swap": "30s"}.get(scenario, "20s")


def main(argv: list[str]) -> int:
    args = parse(argv)
    command = "loadtest/run.py " + " ".join(shlex.quote(a) for a in argv)
    todo = ALL if args.scenario == "all" else [args.scenario]
    if not args.url and not Path(args.binary).exists():
        print(f"{args.binary} not found: cargo build --release", file=sys.stderr)
        return 2
    failed = []
    for scenario in todo:
        a = argparse.Namespace(**vars(args))
        a.duration = args.duration or default_duration(scenario)
        run = scenarios.Run(a, scenario, command)
        try:
            if scenario == "version-swap":
                rc = scenarios.version_swap(run)
            elif scenario == "peers":
                rc = scenarios.peers(run)
            else:
                rc = scenarios.simple(run)
        finally:
            run.close()
        if rc:
            failed.append(scenario)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
