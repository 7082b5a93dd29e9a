"""CIFAR-10 (or a synthetic stand-in) as tensors on the training device, preprocessed there.

`load_images(cfg.data)` returns the raw uint8 images (N, 3, 32, 32) on the CPU from one of
  - torchvision's `cifar-10-batches-py` folder (downloaded by torchvision when online),
  - an image-folder tree `train/<class>/*`, `test/<class>/*`, or a .tar.gz of one (read in place),
  - `data=synthetic`: a small deterministic 10-class set of coloured gratings.
Decoded CIFAR-10 arrays are cached under `data.cache_dir`, so a second load takes well under 2 s.
Each set of images carries a `fingerprint` (the files it was read from, by name and size), which
a study records as part of its identity (study.design.spec).

`to_device(images, preprocessing, device)` fits the preprocessing statistics on the training
split only and applies them on the device (PREPROCESSINGS: one function per level); `crop_flip`
augments a batch on the device.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import logging
import lzma
import os
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from study.errors import UserError, one_line
from study.training.precision import input_dtype, resolve_precision

log = logging.getLogger("study.training.data")

SIDE = 32  # CIFAR-10 images are 32x32 RGB
CLASSES = 10
MAX_IMAGE_BYTES = 1 << 20  # far above any 32x32 image in any format (a raw BMP is 3 KB)
GCN_EPS = 1e-4  # keeps uniform images finite under global contrast normalization
DEFAULT_ROOT = Path("data")
CACHE_FORMAT = 3  # bump when the cached arrays change (2: the fingerprint, 3: the checksum)
CACHED = ("x_train", "y_train", "x_test", "y_test", "classes", "fingerprint")
HOW_TO_PROVIDE = (
    "set data.path=<cifar-10-batches-py folder | image-folder tree | .tar.gz of one>, "
    "or export CIFAR10_PATH=<same>, or go online so torchvision can download it to ./data"
)


@dataclass
class Images:
    """Raw images: uint8 (N, 3, 32, 32) and int64 labels, on the CPU."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str  # where they came from, for the report
    fingerprint: str  # what they are: the files read (names and sizes), not where they lie


@dataclass
class DeviceData:
    """Preprocessed float images and labels on the training device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_images(data_cfg: DictConfig) -> Images:
    if data_cfg.source == "synthetic":
        images = synthetic_images(data_cfg.synthetic_train, data_cfg.synthetic_test)
    else:
        images = load_cifar10(data_cfg.path, Path(data_cfg.cache_dir))
    return take_subsets(images, data_cfg.train_subset, data_cfg.test_subset)


def take_subsets(images: Images, n_train: int | None, n_test: int | None) -> Images:
    """A fixed random subset of each split (the same for every trial and seed); UserError for a
    subset larger than its split, which would be recorded as a size the study never used."""

    def subset(x: torch.Tensor, y: torch.Tensor, n: int | None, split: str
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if n is not None and n > len(y):
            raise UserError(f"data.{split}_subset={n} is more than the {len(y)} {split} images "
                            f"of {images.source}; use at most {len(y)}, or null for all")
        if n is None or n == len(y):
            return x, y
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:n]
        return x[keep], y[keep]

    x_train, y_train = subset(images.x_train, images.y_train, n_train, "train")
    x_test, y_test = subset(images.x_test, images.y_test, n_test, "test")
    source = images.source
    if len(y_train) < len(images.y_train) or len(y_test) < len(images.y_test):
        source += f" (subset: {len(y_train)} train / {len(y_test)} test)"
    return Images(x_train, y_train, x_test, y_test, images.classes, source, images.fingerprint)


def load_cifar10(path: str | None, cache_dir: Path) -> Images:
    source = Path(path).expanduser() if path else DEFAULT_ROOT
    if not source.exists():
        if path:
            raise UserError(f"CIFAR-10 not found at data.path={path}; {HOW_TO_PROVIDE}")
        source = _download_with_torchvision(DEFAULT_ROOT)
    stat = source.stat()
    key = hashlib.sha1(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    cache = cache_dir / f"cifar10-v{CACHE_FORMAT}-{key[:16]}.npz"
    arrays = _read_cache(cache, source) if cache.exists() else None
    if arrays is None:
        arrays = _read_cifar10(source)
        arrays["checksum"] = np.asarray(checksum(arrays))
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # several workers may fill it
        np.savez(partial, **arrays)
        partial.replace(cache)
    return _images_from_arrays(arrays, str(source))


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """A digest of every array the cache holds (but the checksum itself)."""
    digest = hashlib.blake2b(digest_size=16)
    for key in CACHED:
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return digest.hexdigest()


def _read_cache(cache: Path, source: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (after one warning line) when the file is unreadable or does
    not hold what was written: the caller rebuilds it from the source."""
    try:
        with np.load(cache) as stored:
            arrays = {key: stored[key] for key in (*CACHED, "checksum")}
        problem = _cache_problem(arrays)
    except Exception as error:  # a damaged zip raises BadZipFile, EOFError, KeyError, zlib.error
        problem = f"unreadable ({type(error).__name__})"
    if problem is None:
        return arrays
    log.warning("data cache %s is %s; rebuilding it from %s", cache, problem, source)
    return None


def _cache_problem(arrays: dict[str, np.ndarray]) -> str | None:
    if str(arrays["checksum"]) != checksum(arrays):
        return "not what was written (checksum mismatch)"
    count = int(str(arrays["fingerprint"]).split(":")[1])
    images = len(arrays["y_train"]) + len(arrays["y_test"])
    if count != images:
        return f"incomplete ({images} images; its source has {count})"
    return None


def _images_from_arrays(arrays: dict[str, np.ndarray], source: str) -> Images:
    t = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in ("x_train", "y_train",
                                                                       "x_test", "y_test")}
    classes = [str(c) for c in arrays["classes"]]
    return Images(t["x_train"], t["y_train"].long(), t["x_test"], t["y_test"].long(), classes,
                  f"CIFAR-10 from {source}", str(arrays["fingerprint"]))


def file_list_fingerprint(kind: str, files: Iterable[tuple[str, int]]) -> str:
    """`kind:count:hash` of (name, size) pairs: the same files read from a folder, an archive
    or another machine give the same fingerprint, without hashing every byte."""
    listing = sorted(files)
    digest = hashlib.sha1("\n".join(f"{name}:{size}" for name, size in listing).encode())
    return f"{kind}:{len(listing)}:{digest.hexdigest()[:12]}"


def _download_with_torchvision(root: Path) -> Path:
    from torchvision.datasets import CIFAR10

    created = not root.exists()
    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as error:  # torchvision raises URLError, OSError, RuntimeError offline
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # leave no trace of the failed download
        raise UserError(f"CIFAR-10 not found in ./data and download failed "
                        f"({type(error).__name__}); {HOW_TO_PROVIDE}") from None
    return root


def _read_cifar10(source: Path) -> dict[str, np.ndarray]:
    if source.is_file():
        return _read_image_folder_archive(source)
    batches = source if (source / "data_batch_1").exists() else source / "cifar-10-batches-py"
    if (batches / "data_batch_1").exists():
        return _read_torchvision_batches(batches)
    if (source / "train").is_dir() and (source / "test").is_dir():
        return _read_image_folder(source)
    raise UserError(f"{source} holds neither cifar-10-batches-py nor train/ and test/ folders;"
                    f" {HOW_TO_PROVIDE}")


def _read_torchvision_batches(batches: Path) -> dict[str, np.ndarray]:
    """The python-pickle batches torchvision downloads: data_batch_1..5, test_batch, batches.meta.
    Read directly, the same way torchvision.datasets.CIFAR10 reads them."""

    def read(name: str) -> dict:
        try:
            with open(batches / name, "rb") as f:
                return pickle.load(f, encoding="latin1")
        except (OSError, pickle.UnpicklingError, EOFError) as error:
            raise UserError(f"cannot read {batches / name}: {error}") from None

    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]
    splits = {"train": [read(f"data_batch_{i}") for i in range(1, 6)], "test": [read("test_batch")]}
    arrays = {"classes": np.asarray(read("batches.meta")["label_names"]),
              "fingerprint": np.asarray(file_list_fingerprint(
                  "batches", ((name, (batches / name).stat().st_size) for name in names)))}
    for split, parts in splits.items():
        arrays[f"x_{split}"] = np.concatenate([p["data"] for p in parts]).reshape(-1, 3, SIDE, SIDE)
        arrays[f"y_{split}"] = np.concatenate([p["labels"] for p in parts]).astype(np.int64)
    return arrays


def _decode(data: bytes, name: str) -> np.ndarray:
    """The image's pixels (3, 32, 32); UserError naming the file for anything else. Its size is
    checked before the pixels are decoded, so a huge image costs nothing."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        pixels = np.asarray(image.convert("RGB")) if (width, height) == (SIDE, SIDE) else None
    except Exception as error:  # PIL raises many kinds; DecompressionBombError is no OSError
        raise UserError(f"cannot decode image {name}: {type(error).__name__}: "
                        f"{one_line(error, 200)}") from None
    if pixels is None:
        raise UserError(f"image {name} is {width}x{height}; CIFAR-10 images are {SIDE}x{SIDE}")
    return pixels.transpose(2, 0, 1)


Entry = tuple[tuple[str, ...], int, Callable[[], bytes]]  # path parts, size in bytes, read it


def _collect(entries: list[Entry], where: str) -> dict[str, np.ndarray]:
    """Entries are (path parts ending in split/class/file, its size, a function that reads it);
    split is train or test. The layout, the classes and every file's size are checked before
    any file is read; files are read in the order given (an archive's: no seeking back)."""
    by_split: dict[str, list[tuple[str, str, int, str]]] = {"train": [], "test": []}
    wanted = []
    for parts, size, read in entries:
        if len(parts) >= 3 and parts[-3] in by_split:
            by_split[parts[-3]].append((parts[-2], parts[-1], len(wanted), "/".join(parts)))
            wanted.append((size, read, "/".join(parts)))
    classes = sorted({cls for cls, *_ in by_split["train"]})
    if not by_split["train"] or not by_split["test"]:
        raise UserError(f"{where} has no train/<class>/<image> and test/<class>/<image> files;"
                        f" {HOW_TO_PROVIDE}")
    if len(classes) != CLASSES:
        found = one_line(", ".join(classes), 200)
        raise UserError(f"{where} has {len(classes)} class folders ({found}); CIFAR-10 has "
                        f"{CLASSES}: one folder per class under train/ and test/")
    unknown = {cls for cls, *_ in by_split["test"]} - set(classes)
    if unknown:
        raise UserError(f"{where}: test classes {sorted(unknown)} are not among train classes")
    for size, _, member in wanted:
        if size > MAX_IMAGE_BYTES:
            raise UserError(f"{where}: {member} is {size} bytes, more than any {SIDE}x{SIDE} "
                            f"image ({MAX_IMAGE_BYTES} at most): not a CIFAR-10 image")
    blobs = [read() for _, read, _ in wanted]
    files = ((f"{split}/{c}/{n}", len(blobs[i])) for split, found in by_split.items()
             for c, n, i, _ in found)
    arrays: dict[str, np.ndarray] = {"classes": np.asarray(classes), "fingerprint": np.asarray(
        file_list_fingerprint("images", files))}
    for split, files in by_split.items():
        files.sort(key=lambda f: (f[0], f[1]))
        arrays[f"x_{split}"] = np.stack([_decode(blobs[i], f"{where}: {member}")
                                         for _, _, i, member in files])
        arrays[f"y_{split}"] = np.asarray([classes.index(c) for c, *_ in files], dtype=np.int64)
    return arrays


def _read_image_folder(root: Path) -> dict[str, np.ndarray]:
    entries = [(p.relative_to(root).parts, p.stat().st_size, p.read_bytes)
               for split in ("train", "test") for p in (root / split).glob("*/*") if p.is_file()]
    return _collect(entries, str(root))


def _read_image_folder_archive(archive: Path) -> dict[str, np.ndarray]:
    """Read images straight from the archive: nothing is extracted, so no path can escape; the
    members' headers are checked before any member is read."""
    _check_compressed_stream(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [member for member in tar.getmembers() if member.isfile()]
            return _collect([(tuple(Path(m.name).parts), m.size,
                              lambda m=m: tar.extractfile(m).read()) for m in members],
                            str(archive))
    except tarfile.ReadError:
        raise UserError(f"cannot read archive {archive}: not a tar archive (plain, .gz, .bz2 or "
                        ".xz), or truncated") from None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UserError(f"cannot read archive {archive}: "
                        f"{one_line(error) or type(error).__name__}") from None


def synthetic_images(n_train: int, n_test: int, seed: int = 1234) -> Images:
    """Ten classes of oriented sinusoidal gratings (5 orientations x 2 frequencies) with random
    phase, colour and noise: learnable by a small CNN, hopeless for a constant guess."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    labels = torch.arange(n) % 10
    angle = (labels % 5).float() * torch.pi / 5 + 0.15 * torch.randn(n, generator=g)
    freq = torch.where(labels < 5, 0.25, 0.6) * (1 + 0.1 * torch.randn(n, generator=g))
    phase = 2 * torch.pi * torch.rand(n, generator=g)
    yy, xx = torch.meshgrid(torch.arange(SIDE).float(), torch.arange(SIDE).float(), indexing="ij")
    proj = torch.cos(angle)[:, None, None] * xx + torch.sin(angle)[:, None, None] * yy
    wave = torch.sin(freq[:, None, None] * proj + phase[:, None, None])  # (n, 32, 32)
    colour = torch.rand(n, 3, 1, 1, generator=g)
    pixels = 0.5 + 0.35 * colour * wave[:, None] + 0.15 * torch.randn(n, 3, SIDE, SIDE, generator=g)
    x = (pixels.clamp(0, 1) * 255).round().to(torch.uint8)
    order = torch.randperm(n, generator=g)
    x, labels = x[order], labels[order]
    return Images(x[:n_train], labels[:n_train], x[n_train:], labels[n_train:],
                  [f"grating{i}" for i in range(10)], "synthetic gratings",
                  f"synthetic:{n_train}+{n_test}:seed{seed}")


def to_device(images: Images, preprocessing: str, device: torch.device,
              zca_epsilon: float = 1e-2, precision: str = "auto") -> DeviceData:
    """Move images to the device and preprocess them with statistics of the training split; stored
    in the dtype the precision reads (study.training.precision) and in channels_last, the
    convolutions' layout on both the GPU and the CPU."""
    x_train = images.x_train.to(device).float().div_(255)
    x_test = images.x_test.to(device).float().div_(255)
    x_train, x_test = PREPROCESSINGS[preprocessing](x_train, x_test, zca_epsilon)
    dtype = input_dtype(resolve_precision(precision, device))
    return DeviceData(x_train.to(dtype).contiguous(memory_format=torch.channels_last),
                      images.y_train.to(device),
                      x_test.to(dtype).contiguous(memory_format=torch.channels_last),
                      images.y_test.to(device))


def standardize(x_train: torch.Tensor, x_test: torch.Tensor, _zca_epsilon: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel: subtract the training split's mean and divide by its std."""
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True)
    return (x_train - mean) / std, (x_test - mean) / std


def whiten_zca(x_train: torch.Tensor, x_test: torch.Tensor, zca_epsilon: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    mean, whiten = fit_zca(x_train, zca_epsilon)
    return apply_zca(x_train, mean, whiten), apply_zca(x_test, mean, whiten)


def global_contrast_normalize(x: torch.Tensor) -> torch.Tensor:
    """Per image: subtract its mean and divide by its standard deviation over all pixels."""
    flat = x.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    scale = (centred.pow(2).mean(dim=1, keepdim=True) + GCN_EPS).sqrt()
    return (centred / scale).view_as(x)


def fit_zca(x: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ZCA whitening matrix W = U diag(1/sqrt(lambda + epsilon)) U^T of the pixel covariance."""
    flat = x.flatten(1)
    mean = flat.mean(dim=0, keepdim=True)
    centred = flat - mean
    cov = (centred.T @ centred).double() / (len(flat) - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    scale = (eigenvalues.clamp(min=0) + epsilon).rsqrt()
    whiten = (eigenvectors * scale) @ eigenvectors.T
    return mean, whiten.to(x.dtype)


def apply_zca(x: torch.Tensor, mean: torch.Tensor, whiten: torch.Tensor) -> torch.Tensor:
    return ((x.flatten(1) - mean) @ whiten).view_as(x)


Preprocess = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
PREPROCESSINGS: dict[str, Preprocess] = {  # data.preprocessing -> (train, test, zca_epsilon)
    "none": lambda x_train, x_test, _: (x_train, x_test),
    "standardize": standardize,
    "gcn": lambda x_train, x_test, _: (global_contrast_normalize(x_train),
                                       global_contrast_normalize(x_test)),
    "zca": whiten_zca,
}


def crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop from a zero-padded copy (`x` is already padded by `pad` px on each side) plus a
    random horizontal flip, for a whole batch at once on its device."""
    n, c, h, w = x.shape[0], x.shape[1], x.shape[2] - 2 * pad, x.shape[3] - 2 * pad
    dev = x.device
    dy = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), device=dev, generator=generator)
    rows = dy + torch.arange(h, device=dev)
    cols = dx + torch.arange(w, device=dev)
    flip = torch.rand(n, 1, device=dev, generator=generator) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)  # reversing the column index flips the image
    images = torch.arange(n, device=dev).view(n, 1, 1, 1)
    channels = torch.arange(c, device=dev).view(1, c, 1, 1)
    return x[images, channels, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def pad_for_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    return F.pad(x, (pad, pad, pad, pad))


COMPRESSED = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}  # by magic


def _check_compressed_stream(archive: Path) -> None:
    """UserError when a compressed archive is damaged: decompressed to its end once (0.25 s for
    CIFAR-10's 19 MB .tar.gz), so that its checksum is checked; tarfile alone stops at the first
    bad header and reads the members before it as if they were all."""
    with open(archive, "rb") as file:
        head = file.read(6)
    opener = next((open_ for magic, open_ in COMPRESSED.items() if head.startswith(magic)), None)
    if opener is None:
        return
    try:
        with opener(archive, "rb") as stream:
            while stream.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
        raise UserError(f"cannot read archive {archive}: it is corrupt "
                        f"({one_line(error, 200) or type(error).__name__}); copy or download it "
                        "again") from None

