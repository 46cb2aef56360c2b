"""Command line: `python -m convert <model> --repo model-repo --version 1`.

<model> is a module name in convert/models or the path of an entry point file. Exit status 0 when the model
was written, 1 when the parity check failed (nothing is published then), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import parity
from .exporter import ParityError, convert
from .models import load_spec


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="entry point: a module in convert/models or a .py file")
    parser.add_argument("--repo", type=Path, default=Path("model-repo"), help="model repository folder")
    parser.add_argument("--version", type=int, default=1, help="version folder to write")
    parser.add_argument("--atol", type=float, default=parity.DEFAULT_ATOL,
                        help="largest accepted absolute output difference, PyTorch vs ONNX Runtime")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch CPU threads")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        spec = load_spec(args.model)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        convert(spec, args.repo, args.version, atol=args.atol, entry_point=args.model)
    except ParityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
