"""What a model entry point hands to the exporter.

Every model the server can be given through this tool is described by one small module that returns a
`ModelSpec`; the exporter, the parity check, the config writer and the quantizer only ever see this object,
which keeps them independent of any particular network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

# Keys a `preprocess` recipe may carry; they mirror the [preprocess] table of config.toml.
PREPROCESS_KEYS = ("color", "crop_fraction", "size", "interpolation", "mean", "std", "layout")


@dataclass
class ModelSpec:
    # Folder name in the model repository and the model's name on the wire.
    name: str
    # Returns the network, already in eval mode and with its weights loaded.
    build: Callable[[], torch.nn.Module]
    # Returns an input batch of the given size, used to trace the graph and to fix the non-batch dims.
    example_input: Callable[[int], torch.Tensor]
    input_name: str = "input"
    output_name: str = "output"
    max_batch_size: int = 32
    # Class names in output order, one per logit; None for models that are not classifiers.
    labels: Optional[Sequence[str]] = None
    # Image recipe (see convert/preprocess.py); None for models that do not take images.
    preprocess: Optional[Mapping[str, Any]] = None
    opset: int = 13
    # Deep-merged over the default config.toml tables (e.g. {"dynamic_batching": {"max_queue_size": 64}}).
    config: Mapping[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"invalid model name {self.name!r}")
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.preprocess is not None:
            missing = [k for k in PREPROCESS_KEYS if k not in self.preprocess]
            unknown = [k for k in self.preprocess if k not in PREPROCESS_KEYS]
            if missing or unknown:
                raise ValueError(f"preprocess recipe: missing {missing}, unknown {unknown}")
        if self.labels is not None and any("\n" in l or "\r" in l for l in self.labels):
            raise ValueError("labels are stored one per line and cannot contain line breaks")
