"""Model entry points: one module per model, each with a `spec()` returning a ModelSpec.

`load_spec` accepts either the name of a module in this package or the path of a Python file, so a
model can be converted without touching this package.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

from ..spec import ModelSpec


def load_spec(name_or_path: str) -> ModelSpec:
    if name_or_path.endswith(".py") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"no entry point file {path}")
        module_spec = importlib.util.spec_from_file_location(f"convert_entry_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name_or_path):
            raise ValueError(f"invalid entry point name {name_or_path!r}")
        try:
            module = importlib.import_module(f"{__name__}.{name_or_path}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name_or_path}":
                raise
            known = sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem != "__init__")
            raise ValueError(f"unknown model {name_or_path!r}; known: {', '.join(known)}") from None
    if not hasattr(module, "spec"):
        raise ValueError(f"entry point {name_or_path} has no spec() function")
    spec = module.spec()
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"{name_or_path}: spec() must return a convert.spec.ModelSpec")
    spec.validate()
    return spec
