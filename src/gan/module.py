"""The GAN LightningModule: Algorithm 1 of the paper and the released code's simultaneous update."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from lightning import LightningModule
from torch import nn
from torch.optim import Optimizer

from gan import cuda_graph
from gan.cuda_graph import GraphedUpdate, StepOutputs
from gan.ema import GeneratorEMA
from gan.networks.layers import apply_max_norm, has_max_norm
from gan.objectives import GAN2014, Objective
from gan.utils.nvml import drop_futile_nvml_check


class GAN(LightningModule):
    """Trains `generator` against `discriminator` on `objective` (default: the paper's) with manual optimization.

    update_scheme="alternating" is Algorithm 1: every batch is one discriminator step (fresh data, fresh
    noise); after every k-th, one generator step on fresh noise.
    update_scheme="simultaneous" is the released code: one data batch and one noise batch, both gradients
    taken at the current parameters (G's through the same dropout-masked D pass), then both nets step.
    With k > 1 the batches in between are discriminator-only steps. Either way: k D steps per G step.

    Randomness inside a step (noise, dropout, a gradient penalty's interpolation) is seeded by (seed, rank, batch
    count) inside a fork of the global RNG: ranks draw different noise, a resumed run repeats an uninterrupted
    one exactly, and code outside the step sees the global RNG as it left it.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        noise: nn.Module,
        g_optimizer: Callable[..., Optimizer],
        d_optimizer: Callable[..., Optimizer],
        g_scheduler: Callable | None = None,
        d_scheduler: Callable | None = None,
        objective: Objective | None = None,
        update_scheme: str = "simultaneous",
        k: int = 1,
        seed: int = 0,
        ema_decay: float | None = None,
        compile: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator, self.noise = generator, discriminator, noise
        self.objective = objective if objective is not None else GAN2014()
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.g_scheduler, self.d_scheduler = g_scheduler, d_scheduler
        self.update_scheme, self.k, self.seed = update_scheme, k, seed
        self.compile_networks, self.use_cuda_graph = compile, cuda_graph
        self.graphed_update: GraphedUpdate | None = None  # set up for fitting when model.cuda_graph
        self.generator_ema = None
        if ema_decay:
            self.generator_ema = GeneratorEMA(generator, ema_decay)
        self.sample_from_ema = True  # gan-eval use_ema=false scores the raw G of a run that kept an EMA
        self.constrain_g, self.constrain_d = has_max_norm(generator), has_max_norm(discriminator)
        self.batches_seen = 0  # training batches over the whole run; drives k, seeding and schedules
        self.steps = {"g": 0, "d": 0}

    # --- the GAN step -------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        real = batch[0] if isinstance(batch, (list, tuple)) else batch
        generator_turn = (self.batches_seen + 1) % self.k == 0
        with self._step_rng():
            losses, d_outputs = (self.graphed_update or self._update)(real, generator_turn)
        self._advance_schedules(generator_turn)
        # Only on the batches Lightning writes to the loggers: self.log costs ~1 ms a call on the hot path, and
        # D's mean outputs are tensor ops that no other batch needs.
        every = self.trainer.log_every_n_steps  # 0: logging off
        if every and (self.batches_seen + 1) % every == 0:
            self._log_training({**losses, **self.objective.d_statistics(*d_outputs)})
        self.batches_seen += 1
        return losses

    def _log_training(self, stats: dict[str, torch.Tensor]) -> None:
        self.log_dict({**{f"train/{name}": value for name, value in stats.items()}, **self._optimizer_settings()})

    def _update(self, real: torch.Tensor, generator_turn: bool) -> StepOutputs:
        """The device work of one batch: D steps, and G too on its turn (model.cuda_graph captures this)."""
        if self.update_scheme == "simultaneous" and generator_turn:
            return self._simultaneous_step(real)
        losses, d_outputs = self._discriminator_step(real)
        if generator_turn:
            losses["g_loss"] = self._generator_step(self.batch_size_of(real))
        return losses, d_outputs

    def batch_size_of(self, real: torch.Tensor) -> int:
        return real.shape[0]

    def _discriminator_step(self, real: torch.Tensor) -> StepOutputs:
        opt_d = self.optimizers()[1]
        with torch.no_grad():  # G gets no gradient here, so there is nothing to toggle off
            fake = self.generator(self.noise(self.batch_size_of(real)))
        real_out, fake_out = self.discriminator(real), self.discriminator(fake)
        d_loss = self.objective.discriminator_loss(real_out, fake_out)
        penalties = self.objective.regularizer(self.discriminator, real, fake, self.steps["d"])
        opt_d.zero_grad(set_to_none=True)
        # .sum(): a fused model's loss is one per member (gan.fused), and their sum gives each member its own gradient
        self.manual_backward((d_loss + sum(penalties.values())).sum())
        self._step("d", opt_d)
        losses = {"d_loss": d_loss.detach(), **{name: term.detach() for name, term in penalties.items()}}
        return losses, (real_out.detach(), fake_out.detach())

    def _generator_step(self, batch_size: int) -> torch.Tensor:
        opt_g = self.optimizers()[0]
        with self.toggled_optimizer(opt_g):  # D's weights stay out of G's backward pass
            g_loss = self.objective.generator_loss(self.discriminator(self.generator(self.noise(batch_size))))
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss.sum())
            self._step("g", opt_g)
        return g_loss.detach()

    def _simultaneous_step(self, real: torch.Tensor) -> StepOutputs:
        opt_g, opt_d = self.optimizers()
        fake = self.generator(self.noise(self.batch_size_of(real)))
        # D sees a detached copy so each backward reaches one network only (DDP's reducer needs that);
        # G's gradient is carried across by hand: dL_G/dfake through D's own masked forward pass.
        fake_input = fake.detach().requires_grad_()
        real_out, fake_out = self.discriminator(real), self.discriminator(fake_input)
        d_loss, g_loss = self.objective.discriminator_loss(real_out, fake_out), self.objective.generator_loss(fake_out)
        (grad_fake,) = torch.autograd.grad(g_loss.sum(), fake_input, retain_graph=True)
        # A regulariser sees the fake images detached: it trains D only, so G's carried gradient stays exact.
        penalties = self.objective.regularizer(self.discriminator, real, fake_input.detach(), self.steps["d"])
        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        # One backward for both nets: the two terms share no weights (fake_input is a leaf), so D's weights get
        # dL_D/dθ_D and G's get dL_G/dθ_G, (fake * grad_fake).sum() having exactly that gradient w.r.t. θ_G.
        self.manual_backward((d_loss + sum(penalties.values())).sum() + (fake * grad_fake).sum())
        self._step("d", opt_d)
        self._step("g", opt_g)
        losses = {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
                  **{name: term.detach() for name, term in penalties.items()}}  # fmt: skip
        return losses, (real_out.detach(), fake_out.detach())

    # --- helpers of the step ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _step_rng(self) -> Iterator[None]:
        """A fork of the global RNG seeded for this batch; restored afterwards, so code outside the step (a user's
        callback, another model) keeps its own random stream."""
        seed = hash((self.seed, self.global_rank, self.batches_seen)) % 2**63
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.default_generator.manual_seed(seed)
            # torch.manual_seed also seeds CUDA; with CUDA built in but not in use, that is a lazy call that records
            # a stack trace each time (several ms a step). Accelerators in use are initialised, so it is cheap there.
            if devices:
                torch.manual_seed(seed)
            yield

    def _step(self, net: str, optimizer) -> None:
        optimizer.step()
        if net == "d" and self.constrain_d:
            apply_max_norm(self.discriminator)
        if net == "g":
            if self.constrain_g:
                apply_max_norm(self.generator)
            if self.generator_ema is not None:
                self.generator_ema.update_parameters(self.generator)

    def _advance_schedules(self, generator_turn: bool) -> None:
        """Host-side bookkeeping of the nets that stepped: D on every batch, G on its turn."""
        for net in ("d", "g") if generator_turn else ("d",):
            if (scheduler := self.net_schedulers[net]) is not None:
                scheduler.step()
            self.steps[net] += 1

    def _optimizer_settings(self) -> dict[str, float]:
        """train/lr_{g,d} and train/momentum_{g,d} (Adam: beta1) as they are now: Python floats, no host sync
        (with model.cuda_graph the learning rates live on the GPU and are read back here, on logged batches)."""
        settings = {}
        for net, optimizer in zip("gd", self.optimizers()):
            group = optimizer.param_groups[0]
            settings[f"train/lr_{net}"] = float(group["lr"])
            momentum = group.get("momentum", group.get("betas", (None,))[0])
            if momentum is not None:
                settings[f"train/momentum_{net}"] = float(momentum)
        return settings

    # --- evaluation: D on held-out real data vs fresh samples -------------------------------------------------
    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate_d(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate_d(batch, "test")

    def _evaluate_d(self, batch, stage: str) -> None:
        real = batch[0] if isinstance(batch, (list, tuple)) else batch
        batch_size = self.batch_size_of(real)
        fake = self.sample(batch_size, ema=False)  # the G that D is trained against, not its average
        stats = self.objective.d_statistics(self.discriminator(real), self.discriminator(fake))
        self._log_evaluation(stage, stats, batch_size)

    def _log_evaluation(self, stage: str, stats: dict[str, torch.Tensor], batch_size: int) -> None:
        self.log_dict({f"{stage}/{name}": value for name, value in stats.items()}, sync_dist=True)

    @torch.no_grad()
    def sample(self, n: int, noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
               ema: bool | None = None) -> torch.Tensor:
        """n images (or one per row of `noise`) from the evaluation generator (the EMA one when enabled;
        `ema=False` forces the raw G)."""
        use_ema = self.generator_ema is not None and (self.sample_from_ema if ema is None else ema)
        net = self.generator_ema.module if use_ema else self.generator
        was_training = net.training
        net.eval()
        images = net(noise if noise is not None else self.noise(n, generator=generator))
        net.train(was_training)
        return images

    # --- set-up --------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        drop_futile_nvml_check()
        if stage == "fit" and self.use_cuda_graph:
            cuda_graph.check_capturable(self)
            self.graphed_update = GraphedUpdate(
                self._update, optimizers=lambda: self.trainer.optimizers,
                count_step=lambda generator_turn: cuda_graph.count_replayed_step(self.optimizers(), generator_turn),
            )
        # A new run starts G's output bias at the data (released code); a second fit of a trained model keeps it.
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and self.batches_seen == 0 and datamodule is not None:
            self._init_output_bias(datamodule)

    def _init_output_bias(self, datamodule) -> None:
        if hasattr(self.generator, "init_output_bias"):
            self.generator.init_output_bias(datamodule.pixel_mean())
            if self.generator_ema is not None:
                self.generator_ema.module.load_state_dict(self.generator.state_dict())

    def configure_model(self) -> None:
        if self.compile_networks:
            self.generator.compile()
            self.discriminator.compile()

    def configure_optimizers(self):
        opt_g = self.g_optimizer(params=self.generator.parameters(),
                                 **cuda_graph.optimizer_options(self.g_optimizer, self.use_cuda_graph))
        opt_d = self.d_optimizer(params=self.discriminator.parameters(),
                                 **cuda_graph.optimizer_options(self.d_optimizer, self.use_cuda_graph))
        self.net_schedulers = {
            "g": self.g_scheduler(optimizer=opt_g) if self.g_scheduler is not None else None,
            "d": self.d_scheduler(optimizer=opt_d) if self.d_scheduler is not None else None,
        }
        return [
            {"optimizer": opt, **({"lr_scheduler": sched} if sched is not None else {})}
            for opt, sched in ((opt_g, self.net_schedulers["g"]), (opt_d, self.net_schedulers["d"]))
        ]

    def on_train_epoch_start(self) -> None:
        for scheduler in self.net_schedulers.values():
            if hasattr(scheduler, "set_epoch"):
                scheduler.set_epoch(self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["gan_counters"] = {"batches_seen": self.batches_seen, **self.steps}
        cuda_graph.plain_learning_rates(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        cuda_graph.keep_implementation_flags(checkpoint, (self.g_optimizer, self.d_optimizer), self.use_cuda_graph)
        counters = checkpoint.get("gan_counters", {})
        self.batches_seen = counters.get("batches_seen", 0)
        self.steps = {"g": counters.get("g", 0), "d": counters.get("d", 0)}
