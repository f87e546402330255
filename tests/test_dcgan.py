"""The DCGAN pair: sized from the image shape, spectral norm on D, refused sizes, and model=dcgan end to end."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torch.nn.utils import parametrize

from gan.errors import ConfigError
from gan.networks import DCGANDiscriminator, DCGANGenerator
from tests.helpers import (
    RandomImages,
    compose_train,
    cpu_trainer,
    run_cli,
    tiny_data_overrides,
    write_tiny_mnist,
)

# image side -> (stride-2 stages, start map side)
PLANS = {28: (2, 7), 32: (3, 4), 48: (3, 6), 64: (4, 4)}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("side", sorted(PLANS))
def test_generator_and_discriminator_are_sized_from_the_image_shape(side, channels):
    shape = (channels, side, side)
    stages, start = PLANS[side]
    g, d = DCGANGenerator(16, shape, base_channels=8), DCGANDiscriminator(shape, base_channels=8)
    images = g(torch.randn(5, 16))
    assert images.shape == (5, *shape) and d(images).shape == (5,)
    assert g.start_shape == (8 * 2 ** (stages - 1), start, start)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules()) == stages
    assert sum(isinstance(m, nn.Conv2d) for m in d.modules()) == stages
    assert images.min() >= -1 and images.max() <= 1  # tanh by default


def test_output_activation_and_dcgan_initialisation():
    g = DCGANGenerator(100, (1, 28, 28), base_channels=64, output_activation="sigmoid")
    images = g(torch.randn(64, 100))
    assert images.min() >= 0 and images.max() <= 1
    assert isinstance(DCGANGenerator(8, (1, 28, 28), 8, output_activation="linear").upsample[-1], nn.Identity)
    convs = torch.cat([m.weight.detach().flatten() for m in g.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Linear))])
    assert abs(float(convs.mean())) < 1e-3 and float(convs.std()) == pytest.approx(0.02, rel=0.05)
    scales = torch.cat([m.weight.detach() for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert float(scales.mean()) == pytest.approx(1.0, abs=0.01) and float(scales.std()) == pytest.approx(0.02, rel=0.2)


def test_spectral_norm_parametrizes_every_conv_and_the_linear_of_d():
    torch.manual_seed(0)
    plain, normed = DCGANDiscriminator((3, 32, 32), 8), DCGANDiscriminator((3, 32, 32), 8, spectral_norm=True)
    layers = [m for m in normed.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    # batch norm: on by default without spectral norm, off with it unless asked for
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in normed.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in DCGANDiscriminator((3, 32, 32), 8, True, batch_norm=True).modules())
    x = torch.randn(6, 3, 32, 32)
    for _ in range(30):  # power iterations (one per training-mode forward)
        assert normed(x).shape == plain(x).shape == (6,)
    for layer in layers:  # the weight the forward uses has largest singular value 1 (conv: as an out x rest matrix)
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.02)
        raw = layer.parametrizations.weight.original.detach().flatten(1)
        assert float(torch.linalg.matrix_norm(raw, ord=2)) != pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("shape", [(1, 30, 30), (1, 28, 32), (3, 4, 4), (3, 256, 2)])
def test_a_size_the_networks_cannot_make_is_refused_in_one_line_naming_the_sizes_that_work(shape):
    for build in (lambda: DCGANGenerator(8, shape), lambda: DCGANDiscriminator(shape)):
        with pytest.raises(ConfigError) as error:
            build()
        message = str(error.value)
        assert "\n" not in message and f"{shape[1]}x{shape[2]}" in message
        assert all(f" {side}," in message for side in (28, 32, 48, 64))


def test_model_dcgan_composes_with_ema_and_without_max_norm_or_output_bias(tmp_path):
    cfg = compose_train(["experiment=fashion_mnist_dcgan", "model.ema_decay=0.9", "model.discriminator.spectral_norm=true",
                         f"paths.output_dir={tmp_path}"])  # fmt: skip
    model = instantiate(cfg.model)
    assert isinstance(model.generator, DCGANGenerator) and model.generator.out_shape == (1, 28, 28)
    assert model.discriminator.spectral_norm and model.generator.start_shape == (32, 7, 7)
    assert not model.constrain_g and not model.constrain_d and not hasattr(model.generator, "init_output_bias")
    assert cfg.model.g_optimizer.betas == [0.5, 0.999] and cfg.model.update_scheme == "alternating"
    # EMA over a generator with batch-norm buffers, through a few real training steps
    data = RandomImages.make(n_train=32, shape=(1, 28, 28), batch_size=8, scaling="symmetric")
    cpu_trainer(max_epochs=1).fit(model, datamodule=data)
    ema = dict(model.generator_ema.module.named_buffers())
    assert int(model.generator_ema.n_averaged) == 4
    assert not torch.equal(ema["project.2.running_mean"], torch.zeros_like(ema["project.2.running_mean"]))
    assert model.sample(3).shape == (3, 1, 28, 28)


def test_gan_train_runs_experiment_fashion_mnist_dcgan_on_tiny_data(tmp_path):
    """The shipped experiment with the default callbacks (Parzen, figures, sample grids, checkpoints), 3 batches."""
    import json

    root = write_tiny_mnist(tmp_path / "data", folder="FashionMNIST")
    run_dir = tmp_path / "run"
    result = run_cli("gan-train", "experiment=fashion_mnist_dcgan", "debug=fast", "trainer.limit_train_batches=3",
                     "callbacks.figures.every_n_epochs=1", f"hydra.run.dir={run_dir}", *tiny_data_overrides(root),
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert all(math.isfinite(metrics[key]) for key in ("train/d_loss", "train/g_loss", "test/parzen_ll"))
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["gan_counters"]["g"] == 3
    assert checkpoint["gan_config"]["model"]["generator"]["_target_"] == "gan.networks.DCGANGenerator"
    assert (run_dir / "samples" / "epoch_0000.png").is_file() and any((run_dir / "figures").iterdir())


def test_gan_train_refuses_a_dcgan_size_in_one_line(tmp_path, tiny_mnist_root):
    result = run_cli("gan-train", "model=dcgan", "data.scaling=symmetric", "data.shape=[1,30,30]", "debug=fast",
                     f"hydra.run.dir={tmp_path / 'run'}", *tiny_data_overrides(tiny_mnist_root), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: the DCGAN networks cannot make 30x30 images")
    assert "Traceback" not in result.stderr and result.stderr.strip().endswith(errors[0])
