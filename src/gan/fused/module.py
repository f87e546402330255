"""Several GAN runs that differ only in their seed, trained as one model: the GAN step of `gan.module`, on stacked
networks (`gan.fused.networks`), with one loss per member."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.func import vmap

from gan.fused import NotFusable
from gan.fused.networks import (
    MemberRandomness,
    check_fused_forward,
    fuse_networks,
    member_slice,
    stack_into,
)
from gan.module import GAN
from gan.objectives import Objective


class FusedNoise(nn.Module):
    """(members, n, dim) noise: member i's from its generator of the step (its separate run's draw), else the global RNG."""

    def __init__(self, members: Sequence[nn.Module], randomness: MemberRandomness) -> None:
        super().__init__()
        self.members, self.randomness = nn.ModuleList(members), randomness

    def forward(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        generators = self.randomness.generators or [generator] * len(self.members)
        return torch.stack([noise(n, generator=g) for noise, g in zip(self.members, generators)])


class FusedObjective(Objective):
    """A member objective applied to each member's outputs: losses and statistics of shape (members,)."""

    def __init__(self, objective: Objective) -> None:
        if objective.has_regularizer:  # a double backward per member through vmap: not built
            raise NotFusable(f"{objective!r} has a D regulariser (gradient penalty or R1), which fused training does "
                              "not compute")  # fmt: skip
        super().__init__()
        self.objective, self.probability_outputs = objective, objective.probability_outputs

    def check_batchable(self, members: int) -> None:
        """Refuse, before training, an objective whose losses vmap cannot batch (e.g. one calling `.item()`)."""
        outputs = torch.zeros(members, 2)
        try:
            self.discriminator_loss(outputs, outputs), self.generator_loss(outputs), self.d_statistics(outputs, outputs)
        except RuntimeError as error:
            raise NotFusable(f"model.objective ({self.objective!r}) cannot be fused ({str(error).splitlines()[0]})") from None

    def discriminator_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        return vmap(self.objective.discriminator_loss)(real_out, fake_out)

    def generator_loss(self, fake_out: torch.Tensor) -> torch.Tensor:
        return vmap(self.objective.generator_loss)(fake_out)

    def d_statistics(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> dict[str, torch.Tensor]:
        return vmap(self.objective.d_statistics)(real_out, fake_out)

    def __repr__(self) -> str:
        return f"Fused({self.objective!r})"


class FusedGAN(GAN):
    """`members` (GAN modules of one config but the seed) trained as one: every tensor of a step carries a leading
    members dimension, each member's loss is its own, and the optimizers' elementwise updates (SGD, Adam) step each
    member as its own optimizer would. So member i follows a separate run of its seed: on the CPU to rounding (its
    noise and dropout masks are that run's draws), on a GPU in law (CUDA's dropout draws differently).

    The members stay GAN modules of their own: `sync_members` copies each one's share of the stacked weights, EMA
    and counters into it, for what works on one run (callbacks, checkpoints, `gan-eval`).
    """

    def __init__(self, members: Sequence[GAN]) -> None:
        first, randomness = members[0], MemberRandomness()
        if len({(m.update_scheme, m.k, type(m.objective), m.compile_networks, m.use_cuda_graph) for m in members}) > 1:
            raise NotFusable("the members differ in more than their seed")
        ema = first.generator_ema
        super().__init__(
            generator=fuse_networks([m.generator for m in members], randomness, "model.generator"),
            discriminator=fuse_networks([m.discriminator for m in members], randomness, "model.discriminator"),
            noise=FusedNoise([m.noise for m in members], randomness),
            g_optimizer=first.g_optimizer, d_optimizer=first.d_optimizer,
            g_scheduler=first.g_scheduler, d_scheduler=first.d_scheduler,
            objective=FusedObjective(first.objective), update_scheme=first.update_scheme, k=first.k, seed=first.seed,
            ema_decay=ema.decay if ema is not None else None, compile=first.compile_networks,
            cuda_graph=first.use_cuda_graph,
        )  # fmt: skip
        example = first.noise(2, generator=torch.Generator().manual_seed(0))
        check_fused_forward(self.generator, [m.generator for m in members], example, "model.generator")
        with torch.no_grad():
            example = first.generator.eval()(example)
        first.generator.train()
        check_fused_forward(self.discriminator, [m.discriminator for m in members], example, "model.discriminator")
        self.objective.check_batchable(len(members))
        self.randomness = randomness
        self.members = list(members)  # a plain list: not submodules, so the state_dict holds the stacked weights only
        self.evaluation: dict[str, dict[str, tuple]] = {}  # stage -> statistic -> (sum over batches, images)
        self._member_generators: list[torch.Generator] = []

    # --- the step: the parent's, with one loss per member -------------------------------------------------------
    def batch_size_of(self, real: torch.Tensor) -> int:
        return real.shape[1]  # (members, batch, ...)

    @contextlib.contextmanager
    def _step_rng(self) -> Iterator[None]:
        """Member i's generator seeded as its separate run seeds the global RNG for this batch. Under CUDA graphs the
        members draw from the (captured) global RNG instead, still a different stream each."""
        with super()._step_rng():
            if not self.use_cuda_graph:
                if len(self._member_generators) != len(self.members):
                    self._member_generators = [torch.Generator(self.device) for _ in self.members]
                for generator, member in zip(self._member_generators, self.members):
                    generator.manual_seed(hash((member.seed, self.global_rank, self.batches_seen)) % 2**63)
                self.randomness.generators = self._member_generators
            try:
                yield
            finally:
                self.randomness.generators = None

    def _log_training(self, stats: dict[str, torch.Tensor]) -> None:
        # The members' own values go to their loggers (gan.fused.members); the progress bar shows the members' mean.
        self.logged_stats = {**{f"train/{name}": value for name, value in stats.items()}, **self._optimizer_settings()}
        self.log_dict({f"train/{name}": value.mean() for name, value in stats.items()}, logger=False)

    def _log_evaluation(self, stage: str, stats: dict[str, torch.Tensor], batch_size: int) -> None:
        # Lightning's epoch mean of a logged value, per member: a sum weighted by batch size, divided at the end.
        sums = self.evaluation.setdefault(stage, {})
        for name, value in stats.items():
            total, count = sums.get(name, (0.0, 0))
            sums[name] = (total + value.detach() * batch_size, count + batch_size)

    def take_evaluation(self, stage: str) -> dict[str, torch.Tensor]:
        """Each statistic's epoch mean, (members,), and a fresh start for the next epoch."""
        sums = self.evaluation.pop(stage, {})
        return {f"{stage}/{name}": total / count for name, (total, count) in sums.items()}

    # --- the members as GAN modules of their own -------------------------------------------------------------------
    def _init_output_bias(self, datamodule) -> None:
        for member, member_data in zip(self.members, datamodule.members):
            member._init_output_bias(member_data)
        stack_into(self.generator, [m.generator for m in self.members])
        if self.generator_ema is not None:
            stack_into(self.generator_ema.module, [m.generator_ema.module for m in self.members])

    @torch.no_grad()
    def sync_members(self, positions: Sequence[int] | None = None) -> None:
        """Each member's weights, EMA and counters as they are in the fused model now (`positions`: these members
        only; one that stopped or failed keeps the weights it had then)."""
        positions = range(len(self.members)) if positions is None else positions
        members = {i: self.members[i] for i in positions}
        for member in members.values():
            member.to(self.device)
            member.batches_seen, member.steps = self.batches_seen, dict(self.steps)
        member_slice(self.generator, {i: m.generator for i, m in members.items()})
        member_slice(self.discriminator, {i: m.discriminator for i, m in members.items()})
        if self.generator_ema is not None:
            member_slice(self.generator_ema.module, {i: m.generator_ema.module for i, m in members.items()})
            for member in members.values():
                member.generator_ema.n_averaged.copy_(self.generator_ema.n_averaged)
                member.generator_ema._started = self.generator_ema._started
