"""Real photos with known content, for parity checks and int8 calibration.

scikit-image's wheel bundles a few dozen photos; using them keeps every check offline and reproducible.
"""

from __future__ import annotations

from pathlib import Path

# Photos with an unambiguous ImageNet class, used to check that a converted classifier still sees them right.
PARITY_PHOTOS = ("chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")

# Real photographs (not drawings or synthetic patterns) used to calibrate int8 activations.
CALIBRATION_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
    "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png", "retina.jpg", "rocket.jpg",
)


def photo_dir() -> Path:
    import skimage

    folder = Path(skimage.__file__).resolve().parent / "data"
    if not (folder / "chelsea.png").is_file():
        raise FileNotFoundError(f"scikit-image photos not found in {folder}")
    return folder


def photo(name: str) -> Path:
    path = photo_dir() / name
    if not path.is_file():
        raise FileNotFoundError(path)
    return path
