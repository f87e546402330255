"""Objectives (model.objective): each loss by hand, the penalties against autograd, and the step's wiring."""

from __future__ import annotations

import copy

import pytest
import torch
from lightning import Callback
from torch import nn

from gan.errors import ConfigError
from gan.objectives import GAN2014, Hinge, LeastSquares, WassersteinGP, gradient_penalty, r1_penalty
from tests.helpers import RandomImages, assert_simultaneous_step_is_exact, cpu_trainer, small_gan

REAL, FAKE = torch.tensor([2.0, 0.5, -0.3]), torch.tensor([-1.0, 0.3, 1.5])


def _mean(values) -> torch.Tensor:
    return torch.tensor(sum(values) / len(values))


def test_the_papers_value_function():
    d_real, d_fake = torch.sigmoid(REAL), torch.sigmoid(FAKE)
    value = torch.log(d_real).mean() + torch.log(1 - d_fake).mean()
    torch.testing.assert_close(GAN2014().discriminator_loss(REAL, FAKE), -0.5 * value)
    torch.testing.assert_close(GAN2014("minimax").generator_loss(FAKE), torch.log(1 - d_fake).mean())
    torch.testing.assert_close(GAN2014("non_saturating").generator_loss(FAKE), -torch.log(d_fake).mean())
    stats = GAN2014().d_statistics(REAL, FAKE)
    torch.testing.assert_close(stats["d_real"], d_real.mean())
    torch.testing.assert_close(stats["d_fake"], d_fake.mean())
    with pytest.raises(ConfigError, match="model.objective.g_loss='wasserstein' is invalid"):
        GAN2014("wasserstein")


def test_hinge_least_squares_and_wasserstein_by_hand():
    real, fake = REAL.tolist(), FAKE.tolist()
    hinge_d = _mean([max(0.0, 1 - r) for r in real]) + _mean([max(0.0, 1 + f) for f in fake])
    torch.testing.assert_close(Hinge().discriminator_loss(REAL, FAKE), hinge_d)
    torch.testing.assert_close(Hinge().generator_loss(FAKE), -_mean(fake))
    ls_d = 0.5 * _mean([(r - 1) ** 2 for r in real]) + 0.5 * _mean([f**2 for f in fake])
    torch.testing.assert_close(LeastSquares().discriminator_loss(REAL, FAKE), ls_d)
    torch.testing.assert_close(LeastSquares().generator_loss(FAKE), 0.5 * _mean([(f - 1) ** 2 for f in fake]))
    torch.testing.assert_close(WassersteinGP().discriminator_loss(REAL, FAKE), _mean(fake) - _mean(real))
    torch.testing.assert_close(WassersteinGP().generator_loss(FAKE), -_mean(fake))
    stats = WassersteinGP().d_statistics(REAL, FAKE)  # raw scores: sigmoid of a critic value is no probability
    assert set(stats) == {"d_real_score", "d_fake_score", "wasserstein_estimate"}
    torch.testing.assert_close(stats["wasserstein_estimate"], _mean(real) - _mean(fake))


def _critic() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1), nn.Flatten(0))


def _per_image_gradients(critic: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The reference: one image at a time, so no batch sum can mix images."""
    grads = []
    for image in images:
        image = image.unsqueeze(0).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(image).sum(), image, create_graph=True)
        grads.append(g.flatten())
    return grads


def _parameter_gradients(critic: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    params = list(critic.parameters())  # the last bias never reaches an input gradient: zero, not unused
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def test_r1_penalty_and_its_gradient_match_autograd_image_by_image():
    critic, real = _critic(), torch.randn(5, 3, 2, 2)
    penalty = r1_penalty(critic, real)
    reference = torch.stack([g.square().sum() for g in _per_image_gradients(critic, real)]).mean()
    torch.testing.assert_close(penalty, reference)
    for ours, theirs in zip(_parameter_gradients(critic, penalty), _parameter_gradients(critic, reference)):
        torch.testing.assert_close(ours, theirs)  # the double backward trains D


def test_gradient_penalty_and_its_gradient_match_autograd_on_the_same_interpolates():
    critic, real, fake = _critic(), torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    torch.manual_seed(7)
    penalty = gradient_penalty(critic, real, fake)
    torch.manual_seed(7)
    eps = torch.rand(5, 1, 1, 1)
    grads = _per_image_gradients(critic, eps * real + (1 - eps) * fake)
    reference = torch.stack([(g.norm() - 1) ** 2 for g in grads]).mean()
    torch.testing.assert_close(penalty, reference)
    for ours, theirs in zip(_parameter_gradients(critic, penalty), _parameter_gradients(critic, reference)):
        torch.testing.assert_close(ours, theirs)


def test_lazy_r1_runs_every_interval_scaled_by_it():
    critic, real = _critic(), torch.randn(4, 3, 2, 2)
    objective = Hinge(r1_gamma=2.0, r1_interval=16)
    full = r1_penalty(critic, real)
    torch.testing.assert_close(objective.regularizer(critic, real, real, d_step=0)["r1_penalty"], 0.5 * 2.0 * 16 * full)
    torch.testing.assert_close(objective.regularizer(critic, real, real, d_step=32)["r1_penalty"], 16.0 * full)
    assert all(objective.regularizer(critic, real, real, d_step=s) == {} for s in (1, 15, 17))
    assert Hinge().regularizer(critic, real, real, d_step=0) == {} and not Hinge().has_regularizer
    assert WassersteinGP().has_regularizer and not WassersteinGP(gp_lambda=0).has_regularizer


OBJECTIVES = {
    "gan2014": lambda: GAN2014(),
    "gan2014_minimax_r1": lambda: GAN2014("minimax", r1_gamma=1.0),
    "hinge": lambda: Hinge(),
    "least_squares": lambda: LeastSquares(),
    "wasserstein_gp_r1": lambda: WassersteinGP(r1_gamma=1.0, r1_interval=2),
}


class RecordDiscriminatorGradients(Callback):
    """D's gradients as D's optimizer steps, and again at the end of the batch (after G's step)."""

    def __init__(self):
        self.at_d_step, self.at_batch_end = [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if optimizer.param_groups[0]["params"][0] is next(pl_module.discriminator.parameters()):
            self.at_d_step.append([p.grad.clone() for p in pl_module.discriminator.parameters()])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.at_batch_end.append([p.grad.clone() for p in pl_module.discriminator.parameters()])


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_trains_in_both_schemes_and_g_leaves_d_gradients_untouched(name):
    for scheme in ("alternating", "simultaneous"):
        recorder = RecordDiscriminatorGradients()
        model = small_gan(scheme, objective=OBJECTIVES[name](), keep=1.0)
        start = copy.deepcopy(model)
        trainer = cpu_trainer(limit_train_batches=4, callbacks=[recorder], log_every_n_steps=1)
        trainer.fit(model, RandomImages.make(n_train=32, batch_size=8))
        logged = {key.split("/", 1)[1] for key in trainer.logged_metrics if key.startswith("train/")}
        expected = set(model.objective.d_statistics(torch.zeros(1), torch.zeros(1))) | {"d_loss", "g_loss"}
        assert expected <= logged, (scheme, logged)
        if name.endswith("_r1"):
            assert "r1_penalty" in logged
        if name.startswith("wasserstein"):
            assert "gradient_penalty" in logged
        assert all(torch.isfinite(value).all() for value in trainer.logged_metrics.values())
        for net in ("generator", "discriminator"):
            assert any(not torch.equal(a, b) for a, b in zip(getattr(start, net).parameters(), getattr(model, net).parameters()))
        if scheme == "alternating":  # G's own backward pass must not touch D's gradients
            for at_step, at_end in zip(recorder.at_d_step, recorder.at_batch_end):
                for a, b in zip(at_step, at_end):
                    assert torch.equal(a, b)


def test_the_simultaneous_step_carries_g_gradient_exactly_beside_a_regulariser():
    """With R1 in D's loss, D's step follows d(loss + penalty)/dθ_D and G's follows dL_G/dθ_G only."""
    assert_simultaneous_step_is_exact(Hinge(r1_gamma=3.0), d_penalty=lambda d, real: 0.5 * 3.0 * r1_penalty(d, real))


def test_a_checkpoint_from_before_the_objective_group_is_read_as_gan2014():
    """Checkpoints store the run's config; older ones name the paper's G loss model.g_loss."""
    from hydra.utils import instantiate

    from gan.callbacks.run_config import StoreRunConfig
    from gan.eval import config_for_checkpoint
    from tests.helpers import compose_train

    from omegaconf import OmegaConf

    model = OmegaConf.to_container(compose_train([]).model, resolve=True)
    del model["objective"]
    model["g_loss"] = "minimax"
    checkpoint = {StoreRunConfig.KEY: {"model": model, "data": {"root": "x"}}}
    stored = StoreRunConfig.stored(checkpoint)
    assert "g_loss" not in stored["model"] and stored["model"]["objective"]["g_loss"] == "minimax"
    cfg = config_for_checkpoint(compose_train(["ckpt_path=x.ckpt"], config_name="eval"), checkpoint)
    assert repr(instantiate(cfg.model.objective)) == "GAN2014(r1_gamma=0.0, r1_interval=1, g_loss='minimax')"


def test_cuda_graph_refuses_regularisers_and_callbacks_with_step_hooks():
    from unittest.mock import MagicMock

    from gan.cuda_graph import check_capturable

    model = small_gan(cuda_graph=True, objective=WassersteinGP())
    model._trainer = MagicMock(callbacks=[])
    with pytest.raises(ConfigError, match="does not capture D regularisers"):
        check_capturable(model)
    model = small_gan(cuda_graph=True)
    model._trainer = MagicMock(callbacks=[RecordDiscriminatorGradients()])
    with pytest.raises(ConfigError, match="RecordDiscriminatorGradients.on_before_optimizer_step would run once"):
        check_capturable(model)
