"""GAN objectives: what D and G minimise, given D's real-valued outputs on real and generated images.

An objective is a `_target_` class under `model.objective` (conf/model/objective/*.yaml). It owns
- `discriminator_loss(real_out, fake_out)` and `generator_loss(fake_out)`, on D's raw outputs (logits or critic
  values, shape (N,));
- an optional regulariser of D that needs D itself and the images (`regularizer`): added to D's loss. The ones
  here never depend on G (fake images enter detached), so both update schemes carry G's gradient exactly;
- the D statistics worth logging (`d_statistics`): D(x) = sigmoid(d) only where d is the logit of a probability.
R1 on real data (`r1_gamma`, Mescheder et al. 2018) combines with any of them, lazily every `r1_interval` D steps
and scaled by the interval to keep its weight (StyleGAN2).

A user's objective subclasses `Objective` in their own module and names it in their own YAML
(docs/extending.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gan.choices import G_LOSSES
from gan.errors import ConfigError


def input_gradient(discriminator: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """d sum(D(images)) / d images, with the graph kept so that a penalty on it trains D (double backward)."""
    images = images.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(discriminator(images).sum(), images, create_graph=True)
    return gradient.flatten(1)


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over real images (without the gamma / 2 factor)."""
    return input_gradient(discriminator, real).square().sum(dim=1).mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E (||grad D(x_hat)|| - 1)^2 on x_hat = eps * real + (1 - eps) * fake, eps ~ U[0, 1] per image."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    interpolates = eps * real.detach() + (1 - eps) * fake.detach()
    return (input_gradient(discriminator, interpolates).norm(2, dim=1) - 1).square().mean()


class Objective:
    """The interface the GAN step calls; subclasses define the two losses (and may add a regulariser)."""

    probability_outputs = False  # True where sigmoid(D's output) is D's probability that the input is real

    def __init__(self, r1_gamma: float = 0.0, r1_interval: int = 1) -> None:
        if not (isinstance(r1_gamma, (int, float)) and r1_gamma >= 0):
            raise ConfigError(f"model.objective.r1_gamma={r1_gamma!r} is invalid: must be a number >= 0 "
                              "(e.g. model.objective.r1_gamma=10; 0 switches R1 off)")  # fmt: skip
        if not (isinstance(r1_interval, int) and r1_interval >= 1):
            raise ConfigError(f"model.objective.r1_interval={r1_interval!r} is invalid: must be an integer >= 1 "
                              "(e.g. model.objective.r1_interval=16)")  # fmt: skip
        self.r1_gamma, self.r1_interval = float(r1_gamma), r1_interval

    def discriminator_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def has_regularizer(self) -> bool:
        """Whether `regularizer` can return terms (they need a double backward through D)."""
        return self.r1_gamma > 0

    def regularizer(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                    d_step: int) -> dict[str, torch.Tensor]:  # fmt: skip
        """Terms added to D's loss at D step `d_step` (0-based), by name; empty when none applies this step."""
        if self.r1_gamma > 0 and d_step % self.r1_interval == 0:
            return {"r1_penalty": 0.5 * self.r1_gamma * self.r1_interval * r1_penalty(discriminator, real)}
        return {}

    def d_statistics(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean D outputs worth logging: the probabilities D(x), D(G(z)) where D outputs logits of one, else the
        raw scores."""
        if self.probability_outputs:
            return {"d_real": torch.sigmoid(real_out).mean(), "d_fake": torch.sigmoid(fake_out).mean()}
        return {"d_real_score": real_out.mean(), "d_fake_score": fake_out.mean()}

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({settings})"


class GAN2014(Objective):
    """The paper's value function V(D, G) with D's output as a logit.

    D minimises the released code's 0.5 * (BCE(D(x), 1) + BCE(D(G(z)), 0)), that is -V / 2.
    G: non_saturating minimises -log D(G(z)) (section 3's trick, the code's choice); minimax minimises
    log(1 - D(G(z))), the objective as written in Algorithm 1.
    """

    probability_outputs = True

    def __init__(self, g_loss: str = "non_saturating", r1_gamma: float = 0.0, r1_interval: int = 1) -> None:
        super().__init__(r1_gamma, r1_interval)
        if g_loss not in G_LOSSES:
            raise ConfigError(f"model.objective.g_loss={g_loss!r} is invalid: must be one of {', '.join(G_LOSSES)} "
                              "(e.g. model.objective.g_loss=non_saturating)")  # fmt: skip
        self.g_loss = g_loss

    def discriminator_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        real = F.binary_cross_entropy_with_logits(real_out, torch.ones_like(real_out))
        fake = F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out))
        return 0.5 * (real + fake)

    def generator_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        if self.g_loss == "non_saturating":
            return F.binary_cross_entropy_with_logits(fake_out, torch.ones_like(fake_out))
        return -F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out))


class Hinge(Objective):
    """Hinge loss (SNGAN, BigGAN): D minimises E relu(1 - D(x)) + E relu(1 + D(G(z))); G minimises -E D(G(z))."""

    def discriminator_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        return F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()

    def generator_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        return -fake_out.mean()


class LeastSquares(Objective):
    """LSGAN (Mao et al. 2017, a=0, b=c=1): D minimises 0.5 E (D(x) - 1)^2 + 0.5 E D(G(z))^2; G minimises
    0.5 E (D(G(z)) - 1)^2."""

    def discriminator_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        return 0.5 * (real_out - 1).square().mean() + 0.5 * fake_out.square().mean()

    def generator_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        return 0.5 * (fake_out - 1).square().mean()


class WassersteinGP(Objective):
    """WGAN-GP (Gulrajani et al. 2017): the critic minimises E D(G(z)) - E D(x) + lambda * gradient penalty;
    G minimises -E D(G(z)). The paper's recipe: k=5 critic steps per G step, Adam(1e-4, betas (0, 0.9)), no
    batch norm in the critic (the penalty is per image)."""

    def __init__(self, gp_lambda: float = 10.0, r1_gamma: float = 0.0, r1_interval: int = 1) -> None:
        super().__init__(r1_gamma, r1_interval)
        if not (isinstance(gp_lambda, (int, float)) and gp_lambda >= 0):
            raise ConfigError(f"model.objective.gp_lambda={gp_lambda!r} is invalid: must be a number >= 0 "
                              "(e.g. model.objective.gp_lambda=10)")  # fmt: skip
        self.gp_lambda = float(gp_lambda)

    @property
    def has_regularizer(self) -> bool:
        return self.gp_lambda > 0 or super().has_regularizer

    def discriminator_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        return fake_out.mean() - real_out.mean()

    def generator_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        return -fake_out.mean()

    def regularizer(self, discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                    d_step: int) -> dict[str, torch.Tensor]:  # fmt: skip
        terms = super().regularizer(discriminator, real, fake, d_step)
        if self.gp_lambda > 0:
            terms["gradient_penalty"] = self.gp_lambda * gradient_penalty(discriminator, real, fake)
        return terms

    def d_statistics(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> dict[str, torch.Tensor]:
        # E D(x) - E D(G(z)): the critic's estimate of the Wasserstein-1 distance (up to its Lipschitz constant)
        return {**super().d_statistics(real_out, fake_out), "wasserstein_estimate": real_out.mean() - fake_out.mean()}
