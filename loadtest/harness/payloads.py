"""Request bodies for k6, made once per run from real photos.

k6 cannot decode images or build tensors, so the tensor the V2 scripts send is made here with the
project's reference preprocessing (convert/preprocess.py): every server gets the input the model expects.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PHOTO_NAMES = ("chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
TENSOR_PHOTO = "coffee.png"


@dataclass
class Payloads:
    photos: list[Path]
    v2_binary: Path          # JSON header + raw FP32; binary outputs, as tritonclient asks by default
    v2_binary_json_out: Path  # same input, outputs as JSON so model_version can be read cheaply
    header_length: int
    header_length_json_out: int
    v2_json: Path

    def k6_env(self, json_outputs: bool = False) -> dict[str, str]:
        return {
            "PHOTOS": ",".join(str(p) for p in self.photos),
            "V2_BINARY_FILE": str(self.v2_binary_json_out if json_outputs else self.v2_binary),
            "V2_BINARY_HEADER_LENGTH": str(self.header_length_json_out if json_outputs else self.header_length),
            "V2_JSON_FILE": str(self.v2_json),
        }


def photo_dir() -> Path:
    sys.path.insert(0, str(ROOT))
    from convert.photos import photo_dir as skimage_photos

    return skimage_photos()


def _binary_body(tensor, input_name: str, output_name: str, binary_outputs: bool) -> tuple[bytes, int]:
    header = json.dumps({
        "inputs": [{"name": input_name, "shape": list(tensor.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": tensor.nbytes}}],
        "outputs": [{"name": output_name, "parameters": {"binary_data": binary_outputs}}],
    }).encode()
    return header + tensor.astype("<f4").tobytes(), len(header)


def prepare(out_dir: Path, model_dir: Path, input_name: str = "input", output_name: str = "logits") -> Payloads:
    sys.path.insert(0, str(ROOT))
    from convert.preprocess import load_recipe, preprocess

    out_dir.mkdir(parents=True, exist_ok=True)
    photos = [photo_dir() / n for n in PHOTO_NAMES]
    tensor = preprocess(photo_dir() / TENSOR_PHOTO, load_recipe(model_dir / "config.toml"))

    binary, header_length = _binary_body(tensor, input_name, output_name, binary_outputs=True)
    binary_json_out, header_length_json_out = _binary_body(tensor, input_name, output_name, binary_outputs=False)
    as_json = json.dumps({
        "inputs": [{"name": input_name, "shape": list(tensor.shape), "datatype": "FP32",
                    "data": tensor.ravel().tolist()}],
    }).encode()

    paths = {name: out_dir / name for name in ("v2_binary.bin", "v2_binary_json_out.bin", "v2.json")}
    paths["v2_binary.bin"].write_bytes(binary)
    paths["v2_binary_json_out.bin"].write_bytes(binary_json_out)
    paths["v2.json"].write_bytes(as_json)
    return Payloads(photos, paths["v2_binary.bin"], paths["v2_binary_json_out.bin"], header_length,
                    header_length_json_out, paths["v2.json"])
