"""Training images per second: the in-memory loader (data=mnist) against the image-folder loader (data=image_folder)
on the same MNIST images written as PNG files, in one run:

    python scripts/bench_data.py --data-root $GAN_DATA_ROOT [--images 10000] [--num-workers 2] [--epochs 3]

Without MNIST under --data-root the images are generated (same size, random strokes). Each loader runs --epochs
epochs; the first is reported apart (it starts the worker processes) and images/s is over the later ones. Only
loading is timed: no model runs. A JSON summary is the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gan.data import ImageFolderDataModule, TensorBatchLoader


def mnist_images(root: Path, n: int) -> tuple[np.ndarray, str]:
    """(n, 28, 28) uint8: MNIST's first n training images, or generated ones where MNIST is absent."""
    try:
        from torchvision.datasets import MNIST

        return MNIST(str(root), train=True, download=False).data[:n].numpy(), f"MNIST under {root}"
    except (RuntimeError, OSError):
        rng = np.random.default_rng(0)
        images = np.zeros((n, 28, 28), np.uint8)
        for image in images:  # a few bright strokes, so PNG compression is about as effective as on digits
            for _ in range(3):
                r, c = rng.integers(4, 24, 2)
                image[r : r + rng.integers(2, 6), c : c + rng.integers(8, 14)] = 255
        return images, "generated 28x28 images"


def images_per_second(loader, epochs: int, set_epoch) -> tuple[float, float, int]:
    """(seconds of the first epoch, images/s over the later epochs, images an epoch)."""
    seconds, count = [], 0
    for epoch in range(epochs):
        set_epoch(epoch)
        start, count = time.perf_counter(), 0
        for batch in loader:
            count += len(batch[0] if isinstance(batch, (list, tuple)) else batch)
        seconds.append(time.perf_counter() - start)
    later = seconds[1:] or seconds
    return seconds[0], count * len(later) / sum(later), count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("GAN_DATA_ROOT", "data"))
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loaders' own work; the folder loader's workers are separate processes

    pixels, source = mnist_images(Path(args.data_root), args.images)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        for i, image in enumerate(pixels):
            Image.fromarray(image).save(Path(folder) / f"{i:05d}.png")
        write_s = time.perf_counter() - start

        # data=mnist's path: one tensor in memory, a permutation per epoch, one index_select per batch
        tensor = torch.from_numpy(pixels).unsqueeze(1).float().div_(255)
        memory = TensorBatchLoader(tensor, args.batch_size, shuffle=True, drop_last=True, seed=0)
        memory_first, memory_rate, memory_n = images_per_second(memory, args.epochs, memory.sampler.set_epoch)

        # data=image_folder's path: decode and transform each PNG in worker processes
        data = ImageFolderDataModule(folder, image_size=28, channels=1, batch_size=args.batch_size,
                                     num_workers=args.num_workers, seed=0)  # fmt: skip
        start = time.perf_counter()
        data.setup()  # lists the files, reads every header, decodes the held-out splits
        setup_s = time.perf_counter() - start
        files = data.train_dataloader()
        files_first, files_rate, files_n = images_per_second(files, args.epochs, files.sampler.set_epoch)

    print(f"{source}: {len(pixels)} images written as PNG in {write_s:.1f} s; batch {args.batch_size}, "
          f"{args.epochs} epochs, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"in-memory loader (data=mnist):          {memory_rate:12,.0f} images/s  ({memory_n} an epoch)")
    print(f"image-folder loader ({args.num_workers} workers):       {files_rate:12,.0f} images/s  ({files_n} an epoch; "
          f"first epoch {files_first:.1f} s with worker start, setup {setup_s:.1f} s)")  # fmt: skip
    print(f"in-memory / image-folder: {memory_rate / files_rate:.0f}x")
    print(json.dumps({"source": source, "images": len(pixels), "batch_size": args.batch_size,
                      "num_workers": args.num_workers, "in_memory_images_per_s": round(memory_rate),
                      "image_folder_images_per_s": round(files_rate), "ratio": round(memory_rate / files_rate, 1),
                      "image_folder_setup_s": round(setup_s, 2), "image_folder_first_epoch_s": round(files_first, 2),
                      "in_memory_first_epoch_s": round(memory_first, 3)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
