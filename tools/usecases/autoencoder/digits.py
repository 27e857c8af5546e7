"""Handwritten digits for the autoencoder use case: scikit-learn's 8x8 digits, or real MNIST IDX files.

Nothing is downloaded: the 8x8 digits (1,797 images, 64 pixels) ship inside scikit-learn; MNIST is
read from a local folder holding the standard IDX files (``train-images-idx3-ubyte`` and, if
present, ``t10k-images-idx3-ubyte``, each optionally ``.gz``). Pixels are scaled to [0, 1] and
images flattened (8x8 -> 64, 28x28 -> 784). Splits are seeded and disjoint: ``train`` fits the model
(and the least-squares re-fit), ``val`` is what a pruning search optimises, ``test`` judges it.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tools.errors import ToolsError

SKLEARN_DIGITS = "sklearn-digits-8x8"
VAL_FRACTION = 1 / 6  # of the 8x8 digits: 1,197 train / 300 val / 300 test
TEST_FRACTION = 1 / 6
# IDX element type byte -> numpy big-endian dtype (the format's own table)
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_TRAIN = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
MNIST_TEST = ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte")


@dataclass
class DigitSplits:
    """Images in [0, 1], flattened, split three ways (seeded, disjoint)."""

    source: str  # SKLEARN_DIGITS, or "mnist-idx:<folder>"
    side: int  # images are side x side pixels
    seed: int
    train: torch.Tensor = field(repr=False)
    val: torch.Tensor = field(repr=False)
    test: torch.Tensor = field(repr=False)

    @property
    def dim(self) -> int:
        """Pixels per image."""
        return self.side * self.side

    def summary(self) -> dict:
        """JSON-serialisable description (sizes, not pixels)."""
        return {
            "source": self.source,
            "side": self.side,
            "seed": self.seed,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
        }


def _split(
    images: np.ndarray, seed: int, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded permutation cut into train / val / test."""
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ToolsError(f"split fractions val={val_fraction}, test={test_fraction} must be in (0, 1) and sum below 1")
    order = np.random.default_rng(seed).permutation(len(images))
    n_val, n_test = int(round(val_fraction * len(images))), int(round(test_fraction * len(images)))
    if len(images) - n_val - n_test < 1 or n_val < 1:
        raise ToolsError(f"{len(images)} images are too few to split into train / val / test")
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return images[train], images[val], images[test]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)


def load_digits(seed: int = 0, val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION) -> DigitSplits:
    """scikit-learn's 8x8 handwritten digits (pixels 0..16 scaled to [0, 1]), split by ``seed``."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as e:  # a dependency of the project: say how to get it rather than a traceback
        raise ToolsError(
            "the 8x8 digits come with scikit-learn, which is not installed: pip install scikit-learn"
        ) from e
    images = sklearn_digits().data.astype(np.float32) / 16.0
    train, val, test = _split(images, seed, val_fraction, test_fraction)
    return DigitSplits(SKLEARN_DIGITS, 8, seed, _tensor(train), _tensor(val), _tensor(test))


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file (gzip-compressed if the name ends in .gz), shape and dtype from its header."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError as e:
        raise ToolsError(f"IDX file {path}: not found") from e
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError when cut short
        raise ToolsError(f"IDX file {path}: cannot read it ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ToolsError(f"IDX file {path}: not an IDX file (magic {raw[:4].hex() or 'missing'}, expected 0000TTNN)")
    kind, ndim = raw[2], raw[3]
    if kind not in IDX_DTYPES:
        raise ToolsError(
            f"IDX file {path}: unknown element type 0x{kind:02x} (known: {', '.join(f'0x{k:02x}' for k in IDX_DTYPES)})"
        )
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise ToolsError(f"IDX file {path}: header is cut short ({len(raw)} bytes for {ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(IDX_DTYPES[kind])
    expected = 4 + 4 * ndim + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ToolsError(
            f"IDX file {path}: {len(raw)} bytes, but its header {tuple(shape)} of {dtype.name} needs {expected} "
            f"({'truncated' if len(raw) < expected else 'trailing data'})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


def _find(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _images(path: Path) -> np.ndarray:
    """An IDX image file as (n, pixels) in [0, 1]."""
    a = read_idx(path)
    if a.ndim != 3 or a.shape[1] != a.shape[2] or a.shape[0] < 1:
        raise ToolsError(f"IDX file {path}: expected images shaped (n, side, side), got {a.shape}")
    scale = 255.0 if a.dtype.kind in "ui" else 1.0
    return (a.reshape(len(a), -1).astype(np.float32) / scale).clip(0.0, 1.0)


def load_mnist(
    folder: str | Path, seed: int = 0, val_fraction: float = 0.1, max_train: int | None = None
) -> DigitSplits:
    """MNIST (or any IDX image set) from ``folder``: train/val from the train file, test from t10k (or split off train)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolsError(f"--data {folder}: not a folder")
    train_file = _find(folder, MNIST_TRAIN)
    if train_file is None:
        raise ToolsError(f"--data {folder}: no {MNIST_TRAIN[0]}[.gz] (nor {MNIST_TRAIN[1]}[.gz]) in it")
    train_images = _images(train_file)
    side = int(round(np.sqrt(train_images.shape[1])))
    test_file = _find(folder, MNIST_TEST)
    if test_file is not None:
        test = _images(test_file)
        if test.shape[1] != train_images.shape[1]:
            raise ToolsError(
                f"IDX file {test_file}: images have {test.shape[1]} pixels, {train_file.name} has {train_images.shape[1]}"
            )
        train, val, _ = _split(train_images, seed, val_fraction, 0.0)
    else:
        train, val, test = _split(train_images, seed, val_fraction, val_fraction)
    if max_train is not None:
        train = train[:max_train]  # already shuffled by the seeded split
    return DigitSplits(f"mnist-idx:{folder}", side, seed, _tensor(train), _tensor(val), _tensor(test))


def load(data: str | Path | None = None, seed: int = 0, max_train: int | None = None) -> DigitSplits:
    """The 8x8 digits when ``data`` is None, else the MNIST IDX files in the folder ``data``."""
    return load_digits(seed) if data is None else load_mnist(data, seed, max_train=max_train)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (unsigned bytes, gzip if the name ends in .gz): for tests and small fixtures."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
