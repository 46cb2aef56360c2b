#!/usr/bin/env python3
"""A/B two model configurations under the same load, in short alternating halves.

    .venv/bin/python loadtest/abtest.py --b dynamic_batching.preferred_batch_sizes=[4]

Tuning a setting (preferred batch sizes, instances, threads, spinning) on a shared or virtual machine needs this:
its speed drifts and switches state within seconds, so two sweeps minutes apart compare the machine, not the
settings. Both servers stay up; the load alternates between them every `--seconds`, in ABBA order, and the
medians of the per-pair ratios are the figures to read. Each side is the shipped config.toml with `--a`/`--b`
changes applied (section.key=toml-value, repeatable); with no `--a`, A is the shipped configuration. `--server-a`
and `--server-b` run two builds instead (keep a copy of the release binary before rebuilding), to measure a change
to the code the same way.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import client, proc, sweep  # noqa: E402


def change(text: str) -> tuple[tuple[str, str], str]:
    try:
        path, value = text.split("=", 1)
        section, key = path.rsplit(".", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected section.key=value, got {text!r}") from None
    return (section.strip(), key.strip()), value.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", type=change, action="append", default=[], help="a change for side A (repeatable)")
    ap.add_argument("--b", type=change, action="append", default=[], help="a change for side B (repeatable)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--protocol", choices=("v2_binary", "v2_json", "v2_shm", "image"), default="v2_binary")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0, help="measured seconds of each half (after 0.5 s of warm-up)")
    ap.add_argument("--image", type=Path, default=None, help="PNG to send (default scikit-image's chelsea.png)")
    ap.add_argument("--server-a", type=Path, default=proc.SERVER_BIN, help="server binary of side A (default: this build)")
    ap.add_argument("--server-b", type=Path, default=proc.SERVER_BIN, help="server binary of side B (default: this build)")
    args = ap.parse_args()

    png = args.image or client.default_image()
    payload = client.payloads(png.read_bytes(), proc.preprocessed_tensor(png))[args.protocol]

    repos = {side: proc.variant_repo(dict(changes)) for side, changes in (("A", args.a), ("B", args.b))}
    servers = {}
    try:
        for side, repo in repos.items():
            servers[side] = proc.start_server(repo, binary=args.server_a if side == "A" else args.server_b)
            client.check(servers[side].port, payload)
        pairs = []
        for i in range(args.pairs):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            got = {side: sweep.point(servers[side], payload, args.concurrency, 0.5, args.seconds) for side in order}
            a, b = got["A"], got["B"]
            pairs.append({"throughput_b_over_a": b["images_per_s"] / a["images_per_s"], "p50_b_minus_a_ms": b["p50_ms"] - a["p50_ms"],
                          **{f"{k}_{side.lower()}": got[side][k] for side in "AB" for k in ("images_per_s", "p50_ms", "p99_ms", "mean_batch")}})
            print(f"pair {i}: A {a['images_per_s']:6.1f} img/s p50 {a['p50_ms']:6.2f} ms batch {a['mean_batch']:4.1f} | "
                  f"B {b['images_per_s']:6.1f} img/s p50 {b['p50_ms']:6.2f} ms batch {b['mean_batch']:4.1f} | "
                  f"B/A {pairs[-1]['throughput_b_over_a']:.3f}", flush=True)
        summary = {
            "a": {f"{s}.{k}": v for (s, k), v in args.a}, "b": {f"{s}.{k}": v for (s, k), v in args.b},
            "server_a": str(args.server_a), "server_b": str(args.server_b),
            "protocol": args.protocol, "concurrency": args.concurrency,
            "throughput_b_over_a_median": statistics.median(p["throughput_b_over_a"] for p in pairs),
            "p50_b_minus_a_ms_median": statistics.median(p["p50_b_minus_a_ms"] for p in pairs),
            "pairs": pairs,
        }
        print(f"median B/A throughput {summary['throughput_b_over_a_median']:.3f}, "
              f"median p50 B-A {summary['p50_b_minus_a_ms_median']:+.2f} ms over {args.pairs} pairs")
        print(json.dumps(summary))
    finally:
        for s in servers.values():
            s.stop()
        for repo in repos.values():
            proc.cleanup(repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
