"""gan.data.trainer_context: where both kinds of data module put their in-memory images and whether worker batches
are pinned, as the attached trainer says (a SimpleNamespace here: "meta" stands in for a GPU where tensors move)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.helpers import image_folder_datamodule


def on(device: str, world: int = 1) -> SimpleNamespace:
    return SimpleNamespace(global_rank=0, world_size=world, strategy=SimpleNamespace(root_device=torch.device(device)))


def in_memory(tiny_mnist_root, trainer, **kwargs):
    from gan.data import MNISTDataModule

    data = MNISTDataModule(root=str(tiny_mnist_root), verify=False, download=False, val_size=200, batch_size=50,
                           **kwargs)  # fmt: skip
    data.trainer = trainer
    data.setup()
    return data


def test_in_memory_images_live_on_the_training_device_unless_workers_read_them(tiny_mnist_root):
    assert in_memory(tiny_mnist_root, on("meta")).images("train").device.type == "meta"
    assert in_memory(tiny_mnist_root, on("meta"), device_resident=False).images("train").device.type == "cpu"
    assert in_memory(tiny_mnist_root, None).images("train").device.type == "cpu"
    with_workers = in_memory(tiny_mnist_root, on("cuda"), num_workers=1)  # workers read host memory, pinned for a GPU
    assert with_workers.images("train").device.type == "cpu" and with_workers.train_dataloader().pin_memory
    assert not in_memory(tiny_mnist_root, on("cpu"), num_workers=1).train_dataloader().pin_memory


@pytest.mark.parametrize(("resident", "pin"), [(True, True), (False, False)])
def test_image_folder_keeps_held_out_images_where_asked_and_pins_only_if_asked(image_folder, resident, pin):
    data = image_folder_datamodule(image_folder, device_resident=resident, pin_memory=pin)
    data.trainer = on("meta")
    data.setup()
    assert data.images("val").device.type == ("meta" if resident else "cpu")
    data.trainer = on("cuda")
    assert data.train_dataloader().pin_memory is pin


def test_image_folder_refuses_a_share_smaller_than_one_batch_on_every_process(image_folder):
    from gan.errors import DataError

    data = image_folder_datamodule(image_folder, batch_size=150)
    data.setup()
    data.trainer = on("cpu", world=2)
    with pytest.raises(DataError, match=r"has \d+ training images, \d+ for each of 2 processes, fewer than one batch"):
        data.train_dataloader()
