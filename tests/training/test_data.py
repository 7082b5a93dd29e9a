import io
import logging
import pickle
import re
import struct
import tarfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from study.errors import UserError
from study.training import data
from study.training.data import (
    MAX_IMAGE_BYTES,
    PREPROCESSINGS,
    apply_zca,
    checksum,
    crop_flip,
    fit_zca,
    global_contrast_normalize,
    load_cifar10,
    pad_for_crop,
    synthetic_images,
    take_subsets,
    to_device,
)
from tests.conftest import cifar10_archive

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"]
CPU = torch.device("cpu")


@pytest.mark.heavy
@pytest.mark.slow
def test_archive_loader_yields_all_images_with_folder_labels(cifar10) -> None:
    assert cifar10.x_train.shape == (50_000, 3, 32, 32) and cifar10.x_train.dtype == torch.uint8
    assert cifar10.x_test.shape == (10_000, 3, 32, 32)
    assert cifar10.classes == CIFAR10_CLASSES
    assert cifar10.y_train.bincount().tolist() == [5000] * 10
    assert cifar10.y_test.bincount().tolist() == [1000] * 10
    # Labels come from the folder each image sits in: decode a few members directly and find them.
    with tarfile.open(cifar10_archive()) as tar:
        names = [n for n in tar.getnames() if n.endswith(".jpg")]
        for name in [n for n in names if "/train/cat/" in f"/{n}"][:2] + \
                    [n for n in names if "/test/ship/" in f"/{n}"][:2]:
            pixels = torch.from_numpy(np.asarray(Image.open(tar.extractfile(name)).convert("RGB"))
                                      .transpose(2, 0, 1).copy())
            split_x, split_y = ((cifar10.x_train, cifar10.y_train) if "/train/" in f"/{name}"
                                else (cifar10.x_test, cifar10.y_test))
            matches = (split_x == pixels).flatten(1).all(dim=1).nonzero().flatten()
            assert len(matches) >= 1
            expected = CIFAR10_CLASSES.index(name.split("/")[-2])
            assert set(split_y[matches].tolist()) == {expected}


@pytest.mark.heavy
@pytest.mark.slow
def test_the_second_load_comes_from_the_cache_without_decoding(cifar10, tmp_path,
                                                             monkeypatch) -> None:
    load_cifar10(str(cifar10_archive()), tmp_path)  # fills this cache
    decoded = []
    monkeypatch.setattr(data, "_decode", lambda *args: decoded.append(args))
    again = load_cifar10(str(cifar10_archive()), tmp_path)
    assert decoded == []  # counted, not timed: no image was decoded again
    assert torch.equal(again.x_train, cifar10.x_train) and torch.equal(again.y_test, cifar10.y_test)


def _write_image_folder(root, images) -> None:
    for split, xs, ys in (("train", images.x_train, images.y_train),
                          ("test", images.x_test, images.y_test)):
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            folder = root / split / f"class{int(y)}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")


def test_image_folder_tree_and_its_tarball_load_losslessly(tmp_path) -> None:
    images = synthetic_images(40, 20)
    _write_image_folder(tmp_path / "tree", images)
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname="cifar")
    for source in (tmp_path / "tree", tmp_path / "tree.tar.gz"):
        loaded = load_cifar10(str(source), tmp_path / "cache")
        assert loaded.classes == [f"class{i}" for i in range(10)]
        for x, y in ((loaded.x_train, loaded.y_train), (loaded.x_test, loaded.y_test)):
            # Each loaded image is one of the originals, with the original's label.
            originals = torch.cat([images.x_train, images.x_test])
            labels = torch.cat([images.y_train, images.y_test])
            for xi, yi in zip(x, y, strict=True):
                match = (originals == xi).flatten(1).all(dim=1).nonzero().flatten()
                assert labels[match].tolist() == [int(yi)] * len(match) and len(match) >= 1
        assert len(loaded.y_train) == 40 and len(loaded.y_test) == 20


def test_pickled_batches_folder_loads(tmp_path) -> None:
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 4) for i in range(1, 6)), ("test_batch", 3)]:
        with open(batches / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": list(rng.integers(0, 10, n))}, f)
    with open(batches / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES}, f)
    loaded = load_cifar10(str(tmp_path), tmp_path / "cache")
    assert loaded.x_train.shape == (20, 3, 32, 32) and loaded.x_test.shape == (3, 3, 32, 32)
    assert loaded.classes == CIFAR10_CLASSES


@pytest.mark.parametrize("make", ["missing", "not_gzip", "truncated", "wrong_layout", "wrong_size"])
def test_bad_data_fails_with_one_clear_line(tmp_path, make) -> None:
    path = tmp_path / "data.tar.gz"
    if make == "not_gzip":
        path.write_bytes(b"not an archive")
    elif make in ("truncated", "wrong_layout", "wrong_size"):
        png = _png(28 if make == "wrong_size" else 32)
        _tar(path, _ten_classes(png) if make != "wrong_layout" else {"x.png": png})
        if make == "truncated":
            path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(UserError) as error:
        load_cifar10(str(path), tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message and len(message) < 400
    if make in ("missing", "wrong_layout"):
        assert "data.path=" in message and "CIFAR10_PATH" in message
    if make == "wrong_size":
        assert "28x28" in message
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def _png(side: int) -> bytes:
    """A black side x side PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


def _ten_classes(png: bytes, root: str = "", **more: bytes) -> dict[str, bytes]:
    """Archive members: one image per class of ten under train/ and test/, then `more`."""
    return {f"{root}{split}/class{c}/0.png": png for split in ("train", "test")
            for c in range(10)} | {f"{root}{name}": data for name, data in more.items()}


def _tar(path: Path, members: dict[str, bytes]) -> None:
    """A .tar.gz at path holding these members (name -> bytes)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares its size and holds no pixels: all a decoder reads before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("image", "expected"), [
    (_png_header(30_000, 30_000), "DecompressionBombError"),  # 900 megapixels
    (_png_header(100, 100), "is 100x100; CIFAR-10 images are 32x32"),
    (b"\x89PNG garbled", "UnidentifiedImageError"),
], ids=["decompression_bomb", "too_large", "garbled"])
def test_an_undecodable_image_is_one_line_naming_its_archive_member(tmp_path, image: bytes,
                                                                     expected: str) -> None:
    path = tmp_path / "data.tar.gz"
    _tar(path, _ten_classes(_png(32), "cifar/", **{"train/class3/odd.png": image}))
    with pytest.raises(UserError) as error:
        load_cifar10(str(path), tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message and len(message) < 400
    assert f"{path}: cifar/train/class3/odd.png" in message and expected in message


def test_an_archive_is_checked_by_its_headers_before_any_member_is_read(tmp_path,
                                                                        monkeypatch) -> None:
    """A member larger than any 32x32 image, or a tree without exactly ten classes, is refused
    naming it, and no member's bytes are read first."""
    reads = []
    real = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile",
                        lambda tar, member: reads.append(member) or real(tar, member))
    huge, twelve = tmp_path / "huge.tar.gz", tmp_path / "twelve.tar.gz"
    _tar(huge, _ten_classes(_png(32), **{"train/class1/big.png": bytes(MAX_IMAGE_BYTES + 1)}))
    _tar(twelve, _ten_classes(_png(32), **{f"{s}/extra{c}/0.png": _png(32)
                                          for s in ("train", "test") for c in (1, 2)}))
    for path, expected in ((huge, f"train/class1/big.png is {MAX_IMAGE_BYTES + 1} bytes"),
                           (twelve, "has 12 class folders (class0, class1, class2")):
        with pytest.raises(UserError, match=re.escape(expected)):
            load_cifar10(str(path), tmp_path / "cache")
    assert reads == []
    _tar(huge, _ten_classes(_png(32)))
    assert load_cifar10(str(huge), tmp_path / "cache").x_train.shape == (10, 3, 32, 32)
    assert len(reads) == 20


def test_a_subset_larger_than_its_split_is_refused() -> None:
    images = synthetic_images(40, 20)
    assert len(take_subsets(images, 40, 5).y_test) == 5
    with pytest.raises(UserError, match=r"data\.train_subset=41 is more than the 40 train"):
        take_subsets(images, 41, None)
    with pytest.raises(UserError, match=r"data\.test_subset=21 is more than the 20 test"):
        take_subsets(images, None, 21)


def _damage(cache: Path, damage: str) -> None:
    data = cache.read_bytes()
    if damage == "truncated":
        cache.write_bytes(data[:len(data) // 2])
    elif damage == "garbled":
        cache.write_bytes(data[:100] + bytes(1000) + data[1100:])
    else:
        with np.load(cache) as stored:
            arrays = dict(stored)
        if damage == "fewer_images":  # a well-formed file, checksum and all: only the count
            arrays["x_train"], arrays["y_train"] = arrays["x_train"][1:], arrays["y_train"][1:]
            arrays["checksum"] = np.asarray(checksum(arrays))
        else:  # wrong labels, the file's checksum left as it was
            arrays["y_train"] = (arrays["y_train"] + 1) % 10
        np.savez(cache, **arrays)


@pytest.mark.parametrize("damage", ["truncated", "garbled", "fewer_images", "wrong_labels"])
def test_a_bad_cache_is_one_warning_and_rebuilt_from_the_source(tmp_path, caplog,
                                                                 damage: str) -> None:
    images = synthetic_images(40, 20)
    _write_image_folder(tmp_path / "tree", images)
    first = load_cifar10(str(tmp_path / "tree"), tmp_path / "cache")
    [cache] = (tmp_path / "cache").iterdir()
    _damage(cache, damage)
    with caplog.at_level(logging.WARNING, logger="study.training.data"):
        again = load_cifar10(str(tmp_path / "tree"), tmp_path / "cache")
    [warning] = [r.getMessage() for r in caplog.records]
    assert f"data cache {cache} is" in warning and "rebuilding it from" in warning
    assert "\n" not in warning
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(again, key), getattr(first, key))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="study.training.data"):
        load_cifar10(str(tmp_path / "tree"), tmp_path / "cache")  # the rebuilt cache is good
    assert not caplog.records


def test_synthetic_set_is_deterministic_and_balanced_enough() -> None:
    a, b = synthetic_images(300, 100), synthetic_images(300, 100)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (300, 3, 32, 32) and set(a.y_train.tolist()) == set(range(10))


def test_subsets_are_fixed_and_sized() -> None:
    images = synthetic_images(300, 100)
    s1, s2 = take_subsets(images, 50, 20), take_subsets(images, 50, 20)
    assert len(s1.y_train) == 50 and len(s1.y_test) == 20
    assert torch.equal(s1.x_train, s2.x_train)
    assert "subset: 50 train / 20 test" in s1.source


@pytest.mark.parametrize("preprocessing", list(PREPROCESSINGS))
def test_each_preprocessing_is_fitted_on_the_training_images_alone(preprocessing: str) -> None:
    """Every level of a study sees the same training images transformed the same way, and
    each test image is transformed by the training statistics alone, whatever else is tested."""
    # 8x8 crops: ZCA of full images (3072 pixels) took 20 s a fit, and what is fitted on which
    # images does not depend on their size
    full = synthetic_images(300, 100)
    images = replace(full, x_train=full.x_train[..., :8, :8], x_test=full.x_test[..., :8, :8])
    other_tests = replace(images, x_test=images.x_test.flip(0))
    a, b = (to_device(i, preprocessing, CPU, precision="fp32") for i in (images, other_tests))
    assert torch.equal(a.x_train, b.x_train)
    assert torch.allclose(a.x_test.flip(0), b.x_test, atol=1e-5)


@pytest.mark.heavy
@pytest.mark.slow
def test_standardize_gives_zero_mean_unit_std_per_channel_on_train(cifar10) -> None:
    data = to_device(take_subsets(cifar10, 10_000, 1000), "standardize", CPU, precision="fp32")
    assert data.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (data.x_train.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-4
    assert data.x_test.mean(dim=(0, 2, 3)).abs().max() < 0.1  # test uses train statistics


@pytest.mark.heavy
@pytest.mark.slow
def test_zca_whitens_to_identity_covariance(cifar10) -> None:
    # 8x8 patches of real images: a well-conditioned covariance, so a tiny epsilon whitens fully.
    x = cifar10.x_train[:20_000, :, 12:20, 12:20].float() / 255
    mean, whiten = fit_zca(x, epsilon=1e-7)
    z = apply_zca(x, mean, whiten).flatten(1).double()
    cov = torch.cov(z.T)
    assert (cov - torch.eye(len(cov), dtype=cov.dtype)).abs().max() < 0.02


@pytest.mark.heavy
@pytest.mark.slow
def test_zca_on_full_images_whitens_components_above_epsilon(cifar10) -> None:
    x = cifar10.x_train[:5000].float() / 255
    epsilon = 1e-2  # the default data.zca_epsilon
    raw = torch.linalg.eigvalsh(torch.cov(x.flatten(1).T.double()))
    data = to_device(take_subsets(cifar10, 5000, 100), "zca", CPU, zca_epsilon=epsilon,
                     precision="fp32")
    whitened = torch.linalg.eigvalsh(torch.cov(data.x_train.flatten(1).T.double()))
    strong = int((raw > 10 * epsilon).sum())  # components with variance well above epsilon
    assert strong >= 10
    assert ((whitened[-strong:] > 0.85) & (whitened[-strong:] < 1.01)).all()
    assert whitened.max() < 1.01  # never amplified past unit variance


def test_gcn_gives_each_image_zero_mean_unit_std() -> None:
    x = synthetic_images(50, 10).x_train.float() / 255
    flat = global_contrast_normalize(x).flatten(1)
    assert flat.mean(dim=1).abs().max() < 1e-5
    assert (flat.std(dim=1, unbiased=False) - 1).abs().max() < 0.01


def test_crop_flip_returns_shifted_or_mirrored_windows() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    padded = pad_for_crop(x, 2)
    out = crop_flip(padded, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    windows = [padded[:, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
    for i in range(2):
        assert any(torch.equal(out[i], w[i]) or torch.equal(out[i], w[i].flip(-1))
                   for w in windows)


def test_no_path_and_no_download_fails_with_the_ways_to_provide_data(tmp_path, monkeypatch) -> None:
    import urllib.error

    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as error:
        load_cifar10(None, tmp_path / "cache")
    assert "download failed (URLError)" in str(error.value) and "CIFAR10_PATH" in str(error.value)
    assert list(tmp_path.iterdir()) == []  # no empty ./data left behind
