"""The GAN step: Algorithm 1's k:1 schedule, the released code's simultaneous update, both G losses."""

from __future__ import annotations

import copy

import pytest
import torch
from lightning import Callback

from gan.objectives import GAN2014
from tests.helpers import RandomImages, assert_simultaneous_step_is_exact, cpu_trainer, small_gan


class CountSteps(Callback):
    """Counts real optimizer.step() calls through PyTorch's step hooks."""

    def on_fit_start(self, trainer, pl_module):
        self.counts = {"g": 0, "d": 0}
        for name, optimizer in zip("gd", trainer.optimizers):
            optimizer.register_step_post_hook(lambda *_, name=name: self.counts.__setitem__(name, self.counts[name] + 1))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_algorithm1_takes_k_discriminator_steps_per_generator_step(k):
    counter = CountSteps()
    model = small_gan("alternating", k=k)
    cpu_trainer(max_epochs=2, callbacks=[counter]).fit(model, RandomImages.make(n_train=80, batch_size=8))
    batches = 2 * 10
    assert counter.counts == {"d": batches, "g": batches // k}
    assert model.steps == counter.counts and model.batches_seen == batches


@pytest.mark.parametrize("k", [1, 3])
def test_simultaneous_update_steps_g_with_every_kth_d_step(k):
    counter = CountSteps()
    model = small_gan("simultaneous", k=k)
    cpu_trainer(callbacks=[counter]).fit(model, RandomImages.make(n_train=48, batch_size=8))
    assert counter.counts == {"d": 6, "g": 6 // k}


def _one_batch_fit(model, z, data):
    model.noise.forward = lambda n, generator=None: z[:n]
    cpu_trainer(max_steps=-1, limit_train_batches=1).fit(model, data)


def test_simultaneous_update_takes_both_gradients_at_the_same_parameters():
    assert_simultaneous_step_is_exact(GAN2014())


def test_alternating_generator_step_sees_the_updated_discriminator():
    torch.manual_seed(0)
    model, lr = small_gan("alternating", lr=0.1), 0.1
    start = copy.deepcopy(model)
    z = torch.rand(8, 8) * 2 - 1
    data = RandomImages.make(n_train=8, batch_size=8, shuffle=False)
    data.setup()
    real = data.images("train")
    d_loss = GAN2014().discriminator_loss(start.discriminator(real), start.discriminator(start.generator(z).detach()))
    d_grads = torch.autograd.grad(d_loss, list(start.discriminator.parameters()))
    with torch.no_grad():
        for p, g in zip(start.discriminator.parameters(), d_grads):
            p -= lr * g
    g_loss = GAN2014().generator_loss(start.discriminator(start.generator(z)))
    g_grads = torch.autograd.grad(g_loss, list(start.generator.parameters()))
    _one_batch_fit(model, z, data)
    for p0, p1, g in zip(start.generator.parameters(), model.generator.parameters(), g_grads):
        torch.testing.assert_close(p1, p0 - lr * g, rtol=1e-5, atol=1e-6)


def test_minimax_generator_loss_saturates_when_the_discriminator_wins():
    """Section 3: early on D rejects samples confidently; log(1 - D(G(z))) then gives G almost no gradient,
    while -log D(G(z)) still does."""
    model = small_gan()
    with torch.no_grad():
        model.discriminator.net[-1].bias.fill_(-12.0)  # D(G(z)) ~ 6e-6
    z = torch.rand(16, 8)
    norms = {}
    for kind in ("minimax", "non_saturating"):
        model.generator.zero_grad()
        GAN2014(kind).generator_loss(model.discriminator(model.generator(z))).backward()
        norms[kind] = torch.cat([p.grad.flatten() for p in model.generator.parameters()]).norm().item()
    assert norms["non_saturating"] > 0
    assert norms["minimax"] < 1e-4 * norms["non_saturating"]


def test_noise_differs_between_ranks_and_repeats_for_a_rank():
    from unittest.mock import PropertyMock, patch

    model = small_gan()
    model.batches_seen = 5
    draws = {}
    for rank in (0, 1, 0):
        with patch.object(type(model), "global_rank", new_callable=PropertyMock, return_value=rank), model._step_rng():
            draws.setdefault(rank, []).append(model.noise(4))
    torch.testing.assert_close(draws[0][0], draws[0][1])
    assert not torch.equal(draws[0][0], draws[1][0])
    model.batches_seen = 6  # and from batch to batch
    with model._step_rng():
        assert not torch.equal(model.noise(4), draws[0][0])


def test_the_step_leaves_the_global_random_stream_as_it_was():
    """Noise and dropout are seeded per batch in a fork: user code around the step keeps its own stream."""
    model = small_gan()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with model._step_rng():
        model.noise(4)
    torch.testing.assert_close(torch.rand(3), expected)


def test_a_second_fit_keeps_the_trained_output_bias_and_the_ema():
    import functools

    from gan.module import GAN
    from gan.networks import MaxoutDiscriminator, MLPGenerator
    from gan.noise import NoiseSampler

    data = RandomImages.make(n_train=16, batch_size=8)
    model = GAN(MLPGenerator(8, (1, 8, 8), hidden_sizes=(32,), hidden_activations=("relu",)),
                MaxoutDiscriminator((1, 8, 8), hidden_units=(16,)), NoiseSampler(8),
                functools.partial(torch.optim.SGD, lr=0.1), functools.partial(torch.optim.SGD, lr=0.1),
                ema_decay=0.5)  # fmt: skip
    cpu_trainer(limit_train_batches=2).fit(model, data)
    with torch.no_grad():  # as after a long run: far from the data mean it started at
        model.generator.output.bias.fill_(0.25)
        model.generator_ema.module.output.bias.fill_(0.5)
    trained_bias, trained_ema = model.generator.output.bias.clone(), copy.deepcopy(model.generator_ema.module.state_dict())

    class AtFitStart(Callback):  # after setup, before any step of the second fit
        def on_fit_start(self, trainer, pl_module):
            self.bias = pl_module.generator.output.bias.clone()
            self.ema = copy.deepcopy(pl_module.generator_ema.module.state_dict())

    seen = AtFitStart()
    cpu_trainer(limit_train_batches=2, callbacks=[seen]).fit(model, data)
    torch.testing.assert_close(seen.bias, trained_bias)
    for name, value in seen.ema.items():
        torch.testing.assert_close(value, trained_ema[name])


def test_generator_output_bias_starts_at_the_data_mean():
    """The released MNIST code sets G's output bias to logit(mean training image)."""
    import functools

    from gan.module import GAN
    from gan.networks import MaxoutDiscriminator, MLPGenerator
    from gan.noise import NoiseSampler

    data = RandomImages.make(n_train=16, batch_size=8)
    generator = MLPGenerator(8, (1, 8, 8), hidden_sizes=(32,), hidden_activations=("relu",))
    model = GAN(generator, MaxoutDiscriminator((1, 8, 8), hidden_units=(16,)), NoiseSampler(8),
                functools.partial(torch.optim.SGD, lr=0.0), functools.partial(torch.optim.SGD, lr=0.0))  # fmt: skip
    cpu_trainer(limit_train_batches=1).fit(model, data)
    expected = torch.logit(data.images("train").mean(0).flatten().clamp(1e-7, 1 - 1e-7))
    torch.testing.assert_close(model.generator.output.bias, expected)


def test_loader_gives_each_rank_a_disjoint_equal_share_and_resumes_mid_epoch():
    from gan.data.loader import TensorBatchLoader

    data = torch.arange(103).float().unsqueeze(1)
    ranks = [TensorBatchLoader(data, 10, shuffle=True, drop_last=True, seed=4, rank=r, world_size=2) for r in (0, 1)]
    seen = [torch.cat(list(loader)).flatten() for loader in ranks]
    assert len(seen[0]) == len(seen[1]) == 50 and not set(seen[0].tolist()) & set(seen[1].tolist())
    ranks[0].sampler.set_epoch(1)
    assert not torch.equal(torch.cat(list(ranks[0])).flatten(), seen[0])  # a new order every epoch
    resumed = TensorBatchLoader(data, 10, shuffle=True, drop_last=True, seed=4, rank=0, world_size=2)
    resumed.load_state_dict({"epoch": 0, "batches_consumed": 3})
    torch.testing.assert_close(torch.cat(list(resumed)).flatten(), seen[0][30:])
    evaluation = [torch.cat(list(TensorBatchLoader(data, 7, rank=r, world_size=2))).flatten() for r in (0, 1)]
    assert sorted(torch.cat(evaluation).tolist()) == list(range(103))  # every item exactly once, no padding
    # training without shuffling (data.shuffle=false): equal batch counts on every rank too, or DDP would hang
    unshuffled = [TensorBatchLoader(torch.arange(599.0), 100, drop_last=True, rank=r, world_size=3) for r in range(3)]
    assert [len(loader) for loader in unshuffled] == [len(list(loader)) for loader in unshuffled] == [1, 1, 1]
