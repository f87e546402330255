"""Shared test helpers: tiny datasets in the real on-disk formats, and config composition."""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
from hydra import compose, initialize_config_module
from omegaconf import DictConfig
from PIL import Image

TFD_IMAGES = 40
CIFAR_PER_BATCH, CIFAR_TEST = 20, 30  # 5 training batches -> 100 training images
# Real MNIST / Fashion-MNIST for the tests that use them (skipped where absent): GAN_DATA_ROOT, else ../shared/data.
SHARED_DATA = Path(os.environ.get("GAN_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an IDX file (the MNIST format): magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_tiny_mnist(root: Path, n_train: int = 600, n_test: int = 200, folder: str = "MNIST", seed: int = 0) -> Path:
    """A small MNIST-format dataset under root/<folder>/raw: blobs of different brightness per 'class'."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28), np.float32)
        yy, xx = np.mgrid[:28, :28]
        for i, label in enumerate(labels):
            cy, cx = 8 + label, 8 + (label * 7) % 12
            images[i] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 18.0)
        images = np.clip(images * 255 + rng.normal(0, 10, images.shape), 0, 255)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def tfd_arrays(n: int = TFD_IMAGES, resolution: int = 48, seed: int = 0) -> dict[str, np.ndarray]:
    """images (n, r, r) uint8; folds (n, 5): the first half unlabeled (0 in every fold), the labelled half
    split per fold into train (1), valid (2), test (3) with the roles rotating across folds."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, resolution, resolution), dtype=np.uint8)
    images[0, 0, 0], images[1, 0, 0] = 0, 255  # both ends of the pixel range appear
    folds = np.zeros((n, 5), np.uint8)
    labelled = np.arange(n // 2, n)
    for fold in range(5):
        roles = np.array([1] * 12 + [2] * 5 + [3] * 3)  # 12 train, 5 valid, 3 test of the 20 labelled
        folds[labelled, fold] = np.roll(np.resize(roles, len(labelled)), 4 * fold)
    labs_ex = np.where(np.arange(n) < n // 2, -1, rng.integers(1, 8, n)).reshape(n, 1)
    labs_id = rng.integers(1, 100, (n, 1))
    return {"images": images, "folds": folds, "labs_ex": labs_ex, "labs_id": labs_id}


def write_tfd(folder: Path, arrays: dict | None = None, resolution: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"TFD_{resolution}x{resolution}.mat"
    scipy.io.savemat(path, tfd_arrays(resolution=resolution) if arrays is None else arrays)
    return path


def write_tiny_cifar10(root: Path, per_batch: int = CIFAR_PER_BATCH, n_test: int = CIFAR_TEST, seed: int = 0) -> dict:
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} as the official python release
    stores them: pickled dicts with 'data' (n, 3072) uint8, rows = R plane, G plane, B plane (32x32 each),
    and 'labels'. Returns the raw rows: {'train': (5*per_batch, 3072), 'test': (n_test, 3072)}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rows = {"train": [], "test": []}
    files = [(f"data_batch_{i}", "train", per_batch) for i in range(1, 6)] + [("test_batch", "test", n_test)]
    for name, split, n in files:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        rows[split].append(data)
        entry = {"batch_label": name, "data": data, "labels": rng.integers(0, 10, n).tolist(),
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}  # fmt: skip
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return {split: np.concatenate(parts) for split, parts in rows.items()}


def write_every_dataset(root: Path) -> Path:
    """Tiny files of every dataset under one root, sized so each experiment's default splits work
    (10,000 validation images for MNIST-style data and CIFAR-10) and debug=fast has enough batches."""
    write_tiny_mnist(root, n_train=10_600, n_test=200)
    write_tiny_mnist(root, n_train=10_600, n_test=200, folder="FashionMNIST", seed=1)
    write_tiny_cifar10(root, per_batch=2_128, n_test=200)
    write_tfd(root / "TFD", tfd_arrays(n=880))  # 110 validation images in fold 0
    return root


def write_image_folder(root: Path, n: int = 300, size: int = 16, classes: int = 3, mode: str = "RGB", seed: int = 0) -> Path:
    """`n` PNGs in `classes` subfolders (0: flat), each class a different brightness plus noise."""
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    for i in range(n):
        label = i % max(classes, 1)
        folder = root / f"class_{label}" if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(60 + 60 * label + rng.normal(0, 40, (size, size, channels)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(folder / f"{i:04d}.png")
    return root


def image_folder_datamodule(path, **kwargs):
    """An ImageFolderDataModule for write_image_folder's images: 16x16 RGB, batches of 20, no worker processes."""
    from gan.data import ImageFolderDataModule

    options = dict(image_size=16, channels=3, batch_size=20, eval_batch_size=50, num_workers=0, val_fraction=0.2,
                   test_fraction=0.1, seed=3)  # fmt: skip
    return ImageFolderDataModule(str(path), **{**options, **kwargs})


def tiny_data_overrides(root: Path) -> list[str]:
    """Overrides that point an MNIST experiment at write_tiny_mnist's data."""
    return [f"data.root={root}", "data.verify=false", "data.val_size=200", "data.download=false"]


def compose_train(overrides: Sequence[str] = (), config_name: str = "train", return_hydra: bool = False) -> DictConfig:
    with initialize_config_module(config_module="gan.conf", version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra)


class RandomImages:
    """A datamodule factory over random [0,1] tensors (no files), for step-level tests."""

    @staticmethod
    def make(n_train: int = 64, shape: Sequence[int] = (1, 8, 8), batch_size: int = 8, seed: int = 0, **kwargs):
        import torch

        from gan.data.base import InMemoryImageDataModule

        class _Random(InMemoryImageDataModule):
            name = "random"

            def load_splits(self):
                g = torch.Generator().manual_seed(seed)
                return {split: torch.rand(n, *shape, generator=g) for split, n in
                        (("train", n_train), ("val", 32), ("test", 32))}  # fmt: skip

        return _Random(shape=shape, batch_size=batch_size, eval_batch_size=16, seed=seed, **kwargs)


def small_gan(update_scheme: str = "simultaneous", k: int = 1, g_loss: str = "non_saturating", shape=(1, 8, 8),
              keep: float = 1.0, lr: float = 0.05, momentum: float = 0.0, **kwargs):
    """A small paper-style GAN (MLP G, maxout D) for step-level tests; keep=1.0 switches dropout off."""
    import functools

    import torch

    from gan.module import GAN
    from gan.networks import MaxoutDiscriminator, MLPGenerator
    from gan.noise import NoiseSampler
    from gan.objectives import GAN2014

    kwargs.setdefault("objective", GAN2014(g_loss))
    return GAN(
        generator=MLPGenerator(8, shape, hidden_sizes=(32,), hidden_activations=("relu",), output_bias_from_data=False),
        discriminator=MaxoutDiscriminator(shape, hidden_units=(16,), pieces=3, input_keep=keep, hidden_keep=keep),
        noise=NoiseSampler(8),
        g_optimizer=functools.partial(torch.optim.SGD, lr=lr, momentum=momentum),
        d_optimizer=functools.partial(torch.optim.SGD, lr=lr, momentum=momentum),
        update_scheme=update_scheme, k=k, **kwargs,
    )  # fmt: skip


def cpu_trainer(**kwargs):
    from lightning import Trainer

    defaults = dict(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                    limit_val_batches=0)  # fmt: skip
    return Trainer(**{**defaults, **kwargs})


def run_cli(command: str, *args: str, cwd=None, env=None, timeout: int = 600):
    """Run a console script of this package (gan-train, gan-eval, gan-parzen) the way a user would."""
    import os
    import shutil
    import subprocess
    import sys

    script = Path(sys.executable).parent / command
    executable = [str(script)] if script.exists() else [shutil.which(command) or command]
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run([*executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_simultaneous_step_is_exact(objective, d_penalty=None, lr: float = 0.1) -> None:
    """One simultaneous step of small_gan on `objective` equals the reference: D's and G's gradients both taken
    by autograd at the starting parameters (D's loss plus `d_penalty(D, real)` if given), then plain SGD."""
    import copy

    import torch

    torch.manual_seed(0)
    model = small_gan("simultaneous", lr=lr, objective=objective)  # keep=1.0: no dropout, a deterministic step
    start = copy.deepcopy(model)
    z = torch.rand(8, 8) * 2 - 1
    data = RandomImages.make(n_train=8, batch_size=8, shuffle=False)
    data.setup()
    real = data.images("train")
    fake = start.generator(z)
    d_loss = objective.discriminator_loss(start.discriminator(real), start.discriminator(fake.detach()))
    if d_penalty is not None:
        d_loss = d_loss + d_penalty(start.discriminator, real)
    d_grads = torch.autograd.grad(d_loss, list(start.discriminator.parameters()))
    g_grads = torch.autograd.grad(objective.generator_loss(start.discriminator(fake)), list(start.generator.parameters()))
    model.noise.forward = lambda n, generator=None: z[:n]
    cpu_trainer(max_steps=-1, limit_train_batches=1).fit(model, data)
    for net, grads in (("discriminator", d_grads), ("generator", g_grads)):
        for p0, p1, g in zip(getattr(start, net).parameters(), getattr(model, net).parameters(), grads):
            torch.testing.assert_close(p1, p0 - lr * g, rtol=1e-5, atol=1e-6)
