"""Training data: luma decoding, development splits, stateless sampling, crops, batches."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from fusecli.errors import FuseError
from fusecli.io import natural_key
from fusecli.train.data import (
    LabeledItem,
    PairItem,
    crop_and_flip,
    dev_split,
    epoch_indices,
    held_out_pairs,
    labeled_batch,
    list_images,
    load_train_data,
    load_validation_data,
    read_luma,
    scaled_crop,
    unlabeled_batch,
)
from fusecli.train.recipe import (
    DataConfig,
    LabeledFolders,
    MEFSimulation,
    MFFSimulation,
    NaturalImages,
    PairFolders,
)


def test_read_luma_uses_bt601_full_range(tmp_path):
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1, :] = (10, 200, 30)
    iio.imwrite(tmp_path / "c.png", rgb)
    y = read_luma(tmp_path / "c.png")
    assert y.dtype == np.uint8
    assert y[0].tolist() == [
        76,
        150,
        29,
    ]  # round(0.299 * 255), round(0.587 * 255), round(0.114 * 255)
    assert y[1, 0] == round(0.299 * 10 + 0.587 * 200 + 0.114 * 30)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    iio.imwrite(tmp_path / "g.png", grey)
    assert np.array_equal(read_luma(tmp_path / "g.png"), grey)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(FuseError, match="cannot read training image"):
        read_luma(tmp_path / "bad.png")


def test_read_luma_shows_the_image_as_displayed(tmp_path):
    # A camera JPEG stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise).
    stored = np.zeros((4, 6), dtype=np.uint8)
    stored[0, :] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "side.jpg", exif=exif, quality=100)
    y = read_luma(tmp_path / "side.jpg")
    assert y.shape == (6, 4)
    assert y[:, -1].min() > 200 and y[:, 0].max() < 50  # the top row became the right column


def _luma_decoded_directly(path: Path) -> np.ndarray:
    """The trainer's reader before it went through fusecli.io: imageio, then BT.601 Y."""
    pixels = iio.imread(path)
    if pixels.ndim == 2:
        return pixels
    rgb = pixels[..., :3].astype(np.float32)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


@pytest.mark.data
def test_read_luma_keeps_the_training_data_of_the_shared_sets(data_dir):
    # Two images of every folder: each data set's format and colour layout.
    folders = sorted({path.parent for path in data_dir.rglob("*.*") if path.suffix != ".md"})
    assert len(folders) > 20
    for folder in folders:
        for name in list_images(folder)[:2]:
            path = folder / name
            assert np.array_equal(read_luma(path), _luma_decoded_directly(path)), path


def test_natural_key_orders_numbers_numerically():
    assert sorted(["im10.png", "im2.png", "im1.png"], key=natural_key) == [
        "im1.png",
        "im2.png",
        "im10.png",
    ]


def test_contiguous_split_keeps_the_last_block():
    names = [f"FLIR_{i:05d}.jpg" for i in range(20)]
    train, dev = dev_split(names, 0.2, "contiguous")
    assert dev == names[16:] and train == names[:16]


def test_grouped_split_keeps_mri_pet_pairs_together():
    # Pair n and n + 21 share the PET image: they must land on the same side.
    numbers = [12, 13, 16, 17, 20, 21, 24, 25, 28, 29]
    names = [f"{n}.png" for n in numbers] + [f"{n + 21}.png" for n in numbers]
    for split in ("contiguous", "spread"):
        train, dev = dev_split(names, 0.2, split, group_offset=21)
        assert len(dev) == 4 and set(train).isdisjoint(dev) and len(train) + len(dev) == 20
        for n in numbers:
            assert (f"{n}.png" in dev) == (f"{n + 21}.png" in dev)
    # Without the offset, 25 and 46 are unrelated names and can be split apart.
    assert dev_split(names, 0.0, "spread") == (sorted(names, key=natural_key), [])


def test_epoch_indices_visit_every_item_once_per_epoch_and_are_stateless():
    steps = [epoch_indices(10, 5, step, seed=0, stream=1) for step in range(4)]
    assert sorted(steps[0] + steps[1]) == list(range(10))
    assert sorted(steps[2] + steps[3]) == list(range(10))
    assert steps[0] + steps[1] != steps[2] + steps[3]  # reshuffled each epoch
    assert epoch_indices(10, 5, 3, seed=0, stream=1) == steps[3]  # no hidden state


def test_crop_and_flip_shares_the_crop_and_pads_small_images():
    rng = np.random.default_rng(0)
    a = np.arange(50 * 60).reshape(50, 60)
    out_a, out_b = crop_and_flip([a, a + 1], 32, rng)
    assert out_a.shape == (32, 32) and np.array_equal(out_b, out_a + 1)
    (small,) = crop_and_flip([np.ones((10, 20))], 32, rng)
    assert small.shape == (32, 32)


def test_batches_are_deterministic_per_step_and_rank():
    image = (np.random.default_rng(0).random((80, 90)) * 255).astype(np.uint8)
    items = [LabeledItem(image), LabeledItem(image[::-1].copy())]
    kw = dict(batch=2, crop=32, seed=5, mff=MFFSimulation(), mef=MEFSimulation())
    a1 = labeled_batch(items, "mff", step=3, rank=0, **kw)
    a2 = labeled_batch(items, "mff", step=3, rank=0, **kw)
    b = labeled_batch(items, "mff", step=3, rank=1, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a1, a2, strict=True))
    assert not torch.equal(a1[0], b[0])
    assert a1[0].shape == (2, 1, 32, 32) and a1[0].dtype == torch.float32
    assert float(a1[2].min()) >= 0 and float(a1[2].max()) <= 1
    real = [LabeledItem(image, (image // 2, image // 3))]
    s1, _, gt = labeled_batch(real, "mef", step=0, rank=0, **kw)
    assert torch.allclose(s1, torch.floor(gt * 255 / 2) / 255, atol=1e-6)
    pairs = [PairItem(image, 255 - image)]
    u1, u2, folders = unlabeled_batch(pairs, batch=3, crop=32, step=0, seed=0, rank=0)
    assert u1.shape == (3, 1, 32, 32) and torch.allclose(u1 + u2, torch.ones_like(u1))
    assert folders.tolist() == [0, 0, 0]


def test_mef_random_order_swaps_about_half_the_brackets():
    image = (np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8)
    items = [LabeledItem(image)]
    kw = dict(batch=64, crop=32, seed=0, step=0, rank=0, mff=MFFSimulation())
    fixed = labeled_batch(items, "mef", mef=MEFSimulation(), **kw)
    mixed = labeled_batch(items, "mef", mef=MEFSimulation(random_order=True), **kw)
    # The default keeps the darker exposure first, as the paper's training pairs.
    assert bool((fixed[0].mean((1, 2, 3)) < fixed[1].mean((1, 2, 3))).all())
    darker_first = (mixed[0].mean((1, 2, 3)) < mixed[1].mean((1, 2, 3))).float().mean()
    assert 0.25 < float(darker_first) < 0.75
    # The same brackets and ground truths, only the order of the sources changes.
    assert torch.equal(mixed[2], fixed[2])
    for k in range(64):
        same = torch.equal(mixed[0][k], fixed[0][k]) and torch.equal(mixed[1][k], fixed[1][k])
        swapped = torch.equal(mixed[0][k], fixed[1][k]) and torch.equal(mixed[1][k], fixed[0][k])
        assert same != swapped


def _folders(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(6):
        img = (rng.random((40, 48)) * 255).astype(np.uint8)
        for d in ("s1", "s2", "gt"):
            (tmp_path / "lab" / d).mkdir(parents=True, exist_ok=True)
            iio.imwrite(tmp_path / "lab" / d / f"{i}.png", img)
        for d in ("ir", "vi"):
            (tmp_path / "pairs" / d).mkdir(parents=True, exist_ok=True)
            iio.imwrite(tmp_path / "pairs" / d / f"{i}.png", img)
        (tmp_path / "nat").mkdir(exist_ok=True)
        iio.imwrite(tmp_path / "nat" / f"{i}.png", np.stack([img] * 3, axis=-1))
    return tmp_path


def test_load_shards_and_validation_from_folders(tmp_path):
    root = _folders(tmp_path)
    config = DataConfig(
        natural=NaturalImages(dirs=("nat",), dev_fraction=0.2),
        labeled=(
            LabeledFolders(task="mef", path="lab", dirs=("s1", "s2", "gt"), dev_fraction=0.2),
        ),
        unlabeled=(
            PairFolders(name="p", path="pairs", dirs=("ir", "vi"), dev_fraction=0.2),
            PairFolders(name="q", path="pairs", dirs=("vi", "ir"), dev_fraction=0.2),
        ),
        val_crop=32,
    )
    whole = load_train_data(root, config)
    # 6 images, 1 kept for development: 5 simulated per task, + 5 real MEF triples; 5 pairs from
    # each pair folder, each pair knowing which one.
    assert (len(whole.mff), len(whole.mef), len(whole.unlabeled)) == (5, 10, 10)
    assert [item.folder for item in whole.unlabeled] == [0] * 5 + [1] * 5
    assert all(np.array_equal(p.a, q.b) for p, q in zip(whole.unlabeled[:5], whole.unlabeled[5:]))
    shards = [load_train_data(root, config, rank=r, world_size=2) for r in range(2)]
    assert [len(s.unlabeled) for s in shards] == [6, 4]
    val = load_validation_data(root, config, seed=0)
    assert val.mff[0].shape == (1, 1, 32, 32)
    assert val.mef[0].shape == (2, 1, 32, 32)  # one simulated + one real triple
    assert val.unlabeled[0].shape == (2, 1, 32, 32)


def test_repeat_draws_a_folders_pairs_that_many_times_per_epoch(tmp_path):
    root = _folders(tmp_path)
    config = DataConfig(
        unlabeled=(
            PairFolders(name="p", path="pairs", dirs=("ir", "vi"), dev_fraction=0.2),
            PairFolders(name="q", path="pairs", dirs=("vi", "ir"), dev_fraction=0.2, repeat=3),
        ),
    )
    items = load_train_data(root, config).unlabeled
    assert [item.folder for item in items] == [0] * 5 + [1] * 15
    assert all(np.array_equal(items[5 + k].a, items[10 + k].a) for k in range(5))
    # One epoch of batches sees the repeated folder three times as often.
    drawn = [
        items[i].folder for step in range(5) for i in epoch_indices(20, 4, step, seed=0, stream=0)
    ]
    assert drawn.count(1) == 15
    shards = [load_train_data(root, config, rank=r, world_size=2) for r in range(2)]
    assert [len(s.unlabeled) for s in shards] == [3 + 9, 2 + 6]


def test_held_out_pairs_are_the_development_split_the_trainer_skips(tmp_path):
    root = _folders(tmp_path)
    config = DataConfig(
        labeled=(
            LabeledFolders(task="mff", path="lab", dirs=("s1", "s2", "gt"), dev_fraction=0.2),
        ),
        unlabeled=(PairFolders(name="p", path="pairs", dirs=("ir", "vi"), dev_fraction=0.34),),
    )
    held_out = held_out_pairs(root, config)
    assert held_out == {"lab": ["3.png"], "pairs": ["4.png", "5.png"]}
    # Every image is distinct across names, so training must contain none of the held-out ones.
    trained = load_train_data(root, config)
    held = [read_luma(root / "pairs" / "ir" / n) for n in held_out["pairs"]]
    assert len(trained.unlabeled) == 4
    assert not any(np.array_equal(item.a, h) for item in trained.unlabeled for h in held)


def test_mismatched_pair_folders_are_a_fuse_error(tmp_path):
    root = _folders(tmp_path)
    (root / "pairs" / "vi" / "0.png").unlink()
    config = DataConfig(unlabeled=(PairFolders(path="pairs", dirs=("ir", "vi")),))
    with pytest.raises(FuseError, match="same file names"):
        load_train_data(root, config)
    with pytest.raises(FuseError, match="does not exist"):
        load_train_data(root, DataConfig(natural=NaturalImages(dirs=("nowhere",))))


def test_scaled_crop_without_scaling_is_the_plain_crop():
    image = (np.random.default_rng(2).random((70, 90)) * 255).astype(np.uint8)
    plain = scaled_crop(image, 32, np.random.default_rng(7), (1.0, 1.0))
    (expected,) = crop_and_flip([image], 32, np.random.default_rng(7))
    assert np.array_equal(plain, expected.astype(np.float32) / 255.0)


def test_scaled_crop_shows_a_larger_region_at_the_crop_size():
    # A vertical ramp: a crop showing twice the region spans twice the grey range.
    ramp = np.repeat(np.arange(200, dtype=np.uint8)[:, None], 200, axis=1)
    half = scaled_crop(ramp, 32, np.random.default_rng(0), (0.5, 0.5))
    full = scaled_crop(ramp, 32, np.random.default_rng(0), (1.0, 1.0))
    assert half.shape == (32, 32) and half.dtype == np.float32
    assert half.min() >= 0.0 and half.max() <= 1.0
    span = lambda x: float(x.max() - x.min())  # noqa: E731
    assert span(half) == pytest.approx(2 * span(full), rel=0.1)
    # Scale 1/3 on a 40-pixel image cannot show 96 pixels: it shows the whole side.
    small = (np.random.default_rng(3).random((40, 40)) * 255).astype(np.uint8)
    assert scaled_crop(small, 32, np.random.default_rng(0), (0.3, 0.3)).shape == (32, 32)
