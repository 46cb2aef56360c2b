"""The server's image preprocessing matches the Python reference (convert/preprocess.py) on real photos.

`oxinfer preprocess` writes the tensor the image endpoint would feed the model; it is compared with the
reference on photos and on the image kinds clients send (grey, RGBA, palette, 16-bit, EXIF-rotated JPEG).
Bicubic implementations round differently, so values may differ slightly, but never the model's answer.
"""

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import PHOTOS, ROOT

sys.path.insert(0, str(ROOT))
from convert import parity  # noqa: E402
from convert.preprocess import crop_box, load_recipe, preprocess, to_rgb  # noqa: E402

# OXINFER_BIN lets the test run against another build (e.g. target/debug/oxinfer).
BINARY = os.environ.get("OXINFER_BIN", str(ROOT / "target" / "release" / "oxinfer"))
MODEL_DIR = ROOT / "model-repo" / "efficientnet_lite0"
CONFIG = MODEL_DIR / "config.toml"
MAX_ABS = 0.05
MEAN_ABS = 0.005
CATS = {"tabby", "tiger cat", "Egyptian cat"}
# EXIF orientation 6: stored turned 90 degrees counter-clockwise, shown after turning it clockwise.
EXIF_ORIENTATION = 0x0112


def photo(name):
    return lambda tmp: PHOTOS / name


def grey_png(tmp):
    path = tmp / "coffee_grey.png"
    Image.open(PHOTOS / "coffee.png").convert("L").save(path)
    return path


def grey16_png(tmp):
    path = tmp / "coffee_grey16.png"
    grey = np.asarray(Image.open(PHOTOS / "coffee.png").convert("L"), dtype=np.uint16)
    Image.fromarray(grey * 257).save(path)  # full 16-bit range; both reductions give back the 8-bit value
    assert Image.open(path).mode.startswith("I")
    return path


def rgb16_png(tmp):
    # Pillow cannot write 16-bit RGB, so the PNG is assembled by hand. Low bytes are noise: the definition keeps
    # only the high byte, so the picture must come out exactly as the 8-bit photo.
    path = tmp / "coffee_rgb16.png"
    rgb = np.asarray(Image.open(PHOTOS / "coffee.png").convert("RGB"), dtype=np.uint16)
    noise = np.random.default_rng(0).integers(0, 256, rgb.shape, dtype=np.uint16)
    samples = (rgb << 8 | noise).astype(">u2")
    height, width, _ = samples.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + samples[y].tobytes() for y in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    assert np.array_equal(np.asarray(Image.open(path)), rgb.astype(np.uint8))
    return path


def rgba_png(tmp):
    path = tmp / "motorcycle_rgba.png"
    image = Image.open(PHOTOS / "motorcycle_left.png").convert("RGB")
    alpha = np.tile(np.linspace(0, 255, image.width).astype(np.uint8), (image.height, 1))
    image.putalpha(Image.fromarray(alpha))
    image.save(path)
    return path


def palette_png(tmp):
    path = tmp / "chelsea_palette.png"
    Image.open(PHOTOS / "chelsea.png").convert("RGB").quantize(colors=256).save(path)
    assert Image.open(path).mode == "P"
    return path


def exif_rotated_jpeg(tmp):
    path = tmp / "chelsea_exif6.jpg"
    upright = Image.open(PHOTOS / "chelsea.png").convert("RGB")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif.tobytes())
    stored = Image.open(path)
    assert stored.size == (upright.height, upright.width) and stored.getexif()[EXIF_ORIENTATION] == 6
    return path


CASES = {
    "chelsea": photo("chelsea.png"),
    "coffee": photo("coffee.png"),
    "motorcycle_left": photo("motorcycle_left.png"),
    "astronaut": photo("astronaut.png"),
    "rocket_jpeg": photo("rocket.jpg"),
    "grey_png": grey_png,
    "grey16_png": grey16_png,
    "rgb16_png": rgb16_png,
    "rgba_png": rgba_png,
    "palette_png": palette_png,
    "exif_rotated_jpeg": exif_rotated_jpeg,
}
# Cases whose picture is the cat: the reference must still see a cat (proves the orientation was applied
# before the crop and the palette survived).
CAT_CASES = {"chelsea", "palette_png", "exif_rotated_jpeg"}


@pytest.fixture(scope="module")
def model():
    onnx_path = MODEL_DIR / "1" / "model.onnx"
    if not onnx_path.is_file():
        pytest.fail(f"{onnx_path} is missing: run convert/setup.sh first")
    labels = (MODEL_DIR / "labels.txt").read_text().splitlines()
    return parity.session(onnx_path), labels


def server_tensor(image, out):
    if not os.path.isfile(BINARY):
        pytest.fail(f"{BINARY} not found: build it with `cargo build --release` (or set OXINFER_BIN)")
    proc = subprocess.run([BINARY, "preprocess", "--model-config", str(CONFIG), "--image", str(image),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"oxinfer preprocess failed ({proc.returncode}): {proc.stderr}"
    raw = np.fromfile(out, dtype="<f4")
    assert raw.size == 3 * 224 * 224, f"expected 150528 float32 values, got {raw.size}"
    return raw.reshape(1, 3, 224, 224)


@pytest.mark.parametrize("case", list(CASES))
def test_server_preprocessing_matches_reference(case, tmp_path, model):
    sess, labels = model
    image = CASES[case](tmp_path)
    reference = preprocess(image, load_recipe(CONFIG))
    served = server_tensor(image, tmp_path / "tensor.f32")

    diff = np.abs(served.astype(np.float64) - reference)
    logits = sess.run(["logits"], {"input": np.concatenate([reference, served])})[0]
    ref_top, srv_top = (int(i) for i in logits.argmax(axis=1))
    print(f"{case}: max-abs {diff.max():.4f} mean-abs {diff.mean():.5f} "
          f"({(diff > 1e-6).mean():.1%} of values differ); top-1 reference {labels[ref_top]!r}, "
          f"server {labels[srv_top]!r}")
    assert diff.max() <= MAX_ABS, f"{case}: max-abs {diff.max():.4f} > {MAX_ABS}"
    assert diff.mean() <= MEAN_ABS, f"{case}: mean-abs {diff.mean():.5f} > {MEAN_ABS}"
    assert srv_top == ref_top, f"{case}: server top-1 {labels[srv_top]!r}, reference {labels[ref_top]!r}"
    if case in CAT_CASES:
        assert labels[ref_top] in CATS


def test_reference_crop_rounds_half_to_even_and_clamps():
    # chelsea.png is 451 x 300: 0.875 * 300 = 262.5, which the definition rounds to 262.
    assert crop_box(451, 300, 0.875) == (94, 19, 262)
    assert crop_box(300, 451, 0.875) == (19, 94, 262)
    assert crop_box(101, 7, 0.5) == (48, 1, 4)  # 3.5 -> 4
    assert crop_box(10, 10, 2.0) == (0, 0, 10)
    assert crop_box(3, 1, 0.1) == (1, 0, 1)


def test_reference_colour_conversions():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (10, 20, 30)  # alpha dropped, not composited
    grey16 = Image.fromarray(np.full((4, 4), 0x12FF, dtype=np.uint16))
    assert to_rgb(grey16).getpixel((0, 0)) == (0x12, 0x12, 0x12)  # high byte
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50])
    assert to_rgb(palette).getpixel((0, 0)) == (200, 100, 50)
    assert to_rgb(Image.new("LA", (4, 4), (77, 0))).getpixel((0, 0)) == (77, 77, 77)


def test_reference_normalises_per_channel_in_nchw():
    recipe = {"color": "RGB", "crop_fraction": 1.0, "size": 2, "interpolation": "bicubic",
              "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "layout": "NCHW"}
    tensor = preprocess(Image.new("RGB", (6, 4), (255, 127, 0)), recipe)
    assert tensor.shape == (1, 3, 2, 2) and tensor.dtype == np.float32
    assert np.array_equal(tensor[0, :, 0, 0], np.array([1.0, 0.0, -127 / 128], dtype=np.float32))
    bgr = preprocess(Image.new("RGB", (6, 4), (255, 127, 0)), {**recipe, "color": "BGR", "layout": "NHWC"})
    assert bgr.shape == (1, 2, 2, 3) and np.array_equal(bgr[0, 0, 0], tensor[0, ::-1, 0, 0])
