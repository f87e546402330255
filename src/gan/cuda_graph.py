"""The GAN update as CUDA graphs: a training step launches one graph instead of hundreds of kernels.

The paper's networks are small enough that an eager step leaves the GPU idle while Python launches its
kernels one by one (about 5 ms a step on an H200); replaying a captured step launches them all at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from lightning import Callback
from torch.optim import Optimizer

from gan.errors import ConfigError

StepOutputs = tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]  # losses, D's logits
Update = Callable[[torch.Tensor, bool], StepOutputs]


class _GraphKey(NamedTuple):
    """What a graph bakes in: a step with another key needs a graph of its own."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    generator_turn: bool
    hyperparameters: tuple


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_real: torch.Tensor
    losses: dict[str, torch.Tensor]
    logits: tuple[torch.Tensor, ...]


class GraphedUpdate:
    """Captures `update(real, generator_turn)`, the device work of one GAN step, and replays it.

    - Captured: noise, forward and backward passes, the optimizers' steps, max-norm, the EMA. Host work stays
      outside: schedulers, counters, logging, callbacks' batch hooks.
    - Baked into a graph, so a change captures again: the batch's shape, whether G steps, and every optimizer
      hyperparameter but the learning rate (the paper's momentum rises every epoch: one capture an epoch).
      Learning rates live in device tensors, refreshed from the param groups before every step, so a
      scheduler's per-step decay reaches the graph. The optimizers must be fused (the module makes them so).
    - The first `warmup` (>= 1) steps of every new graph run eagerly on a side stream, as PyTorch's CUDA-graph
      guide recommends: optimizer state, the EMA's first copy (a host-side branch a graph would bake in) and
      lazy initialisation happen before the capture. They are real training steps: no batch is trained twice
      or skipped.
    - Noise and dropout come from the CUDA generator's seed and offset at replay, which the module reseeds
      before every step. Callbacks' backward and optimizer-step hooks run when a graph is captured, not at
      every replay; Lightning's optimizer-step count is kept by `count_step`.
    """

    def __init__(self, update: Update, optimizers: Callable[[], list[Optimizer]],
                 count_step: Callable[[bool], None], warmup: int = 3) -> None:  # fmt: skip
        if warmup < 1:
            raise ValueError(f"warmup={warmup}: at least one eager step must precede a capture (see the docstring)")
        self.update, self.optimizers, self.count_step, self.warmup = update, optimizers, count_step, warmup
        self.graphs: dict[_GraphKey, _Captured] = {}
        self.eager_steps: dict[_GraphKey, int] = {}
        self.captures = 0
        self._lr_tensors: dict[tuple[int, int], torch.Tensor] = {}
        self._side_stream: torch.cuda.Stream | None = None

    def __call__(self, real: torch.Tensor, generator_turn: bool) -> StepOutputs:
        self._refresh_learning_rates(real.device)
        key = _GraphKey(tuple(real.shape), real.dtype, generator_turn, self._baked_hyperparameters())
        if key not in self.graphs:
            self._forget_graphs_unlike(key)
            if self.eager_steps.get(key, 0) < self.warmup:
                self.eager_steps[key] = self.eager_steps.get(key, 0) + 1
                return self._eager_on_side_stream(real, generator_turn)
            self.graphs[key] = self._capture(real, generator_turn)  # runs Lightning's step counting once
        else:
            self.count_step(generator_turn)
        captured = self.graphs[key]
        captured.static_real.copy_(real)
        captured.graph.replay()
        # Clones: the divergence guard keeps each step's losses, and the next replay overwrites the static ones.
        return {name: loss.clone() for name, loss in captured.losses.items()}, captured.logits

    def _refresh_learning_rates(self, device: torch.device) -> None:
        """Schedulers may write Python floats into the param groups; the graph reads these tensors."""
        for i, optimizer in enumerate(self.optimizers()):
            for j, group in enumerate(optimizer.param_groups):
                tensor = self._lr_tensors.get((i, j))
                if tensor is None:
                    tensor = self._lr_tensors[(i, j)] = torch.full((), float(group["lr"]), device=device)
                elif group["lr"] is not tensor:
                    tensor.fill_(group["lr"])  # a float (a kernel argument, no host sync) or another tensor
                group["lr"] = tensor

    def _baked_hyperparameters(self) -> tuple:
        not_baked = ("params", "lr", "initial_lr", "param_names")

        def hashable(value):
            return tuple(value) if isinstance(value, list) else value

        return tuple(tuple((name, hashable(value)) for name, value in sorted(group.items())
                           if name not in not_baked and not isinstance(value, torch.Tensor))
                     for optimizer in self.optimizers() for group in optimizer.param_groups)  # fmt: skip

    def _forget_graphs_unlike(self, key: _GraphKey) -> None:
        """Graphs of other hyperparameters will not be replayed again: free their memory."""
        for old in [old for old in self.graphs if old.hyperparameters != key.hyperparameters]:
            del self.graphs[old]
        self.eager_steps = {old: n for old, n in self.eager_steps.items() if old.hyperparameters == key.hyperparameters}

    def _eager_on_side_stream(self, real: torch.Tensor, generator_turn: bool) -> StepOutputs:
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(device=real.device)
        self._side_stream.wait_stream(torch.cuda.current_stream(real.device))
        with torch.cuda.stream(self._side_stream):
            out = self.update(real, generator_turn)
        torch.cuda.current_stream(real.device).wait_stream(self._side_stream)
        return out

    def _capture(self, real: torch.Tensor, generator_turn: bool) -> _Captured:
        static_real = real.clone()
        graph = torch.cuda.CUDAGraph()
        rng = torch.cuda.get_rng_state(real.device)
        with torch.cuda.graph(graph):  # its own memory pool: graphs replayed in any order stay independent
            losses, logits = self.update(static_real, generator_turn)
        torch.cuda.set_rng_state(rng, real.device)  # the replay draws from the seed the module set for this step
        self.captures += 1
        return _Captured(graph, static_real, losses, logits)


# --- what the module needs around a graphed step: checks, fused optimizers, checkpoints -----------------------
FUSED_CUDA_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
# Callback hooks that run inside the device work of a step: a replayed graph would skip them.
STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad")


def check_capturable(module) -> None:
    """Refuse in one line what a captured step cannot do: optimizers without a fused CUDA step, a CPU or several
    processes, objectives with a gradient penalty (a double backward not yet verified under capture), and
    callbacks with per-step hooks (they would run once, at capture)."""
    for name, factory in (("g_optimizer", module.g_optimizer), ("d_optimizer", module.d_optimizer)):
        if getattr(factory, "func", factory) not in FUSED_CUDA_OPTIMIZERS:
            raise ConfigError(f"model.cuda_graph=true needs optimizers with a fused CUDA step (SGD, Adam, AdamW); "
                              f"model.{name} has none. Fix: pick one of those, or model.cuda_graph=false")
    if module.objective.has_regularizer:
        raise ConfigError(f"model.cuda_graph=true does not capture D regularisers (gradient penalty, R1) of "
                          f"{module.objective!r}. Fix: model.cuda_graph=false, or an objective without one")
    trainer = module.trainer
    for callback in trainer.callbacks:
        hooks = [hook for hook in STEP_HOOKS if getattr(type(callback), hook, None) is not getattr(Callback, hook)]
        if hooks:
            raise ConfigError(f"model.cuda_graph=true replays captured steps, so {type(callback).__name__}."
                              f"{hooks[0]} would run once at capture instead of every step. Fix: remove that "
                              "callback, or model.cuda_graph=false")
    device, world = trainer.strategy.root_device, trainer.world_size
    if device.type != "cuda" or world != 1:
        raise ConfigError(f"model.cuda_graph=true needs one CUDA GPU, but this run is on {device.type} with "
                          f"{world} process(es). Fix: add trainer=gpu trainer.devices=1, or model.cuda_graph=false")


def optimizer_options(factory, use_cuda_graph: bool) -> dict[str, bool]:
    """Graph capture needs the fused optimizers (they read the learning rate from a device tensor)."""
    if not use_cuda_graph:
        return {}
    accepted = inspect.signature(getattr(factory, "func", factory)).parameters
    return {"fused": True, **({"capturable": True} if "capturable" in accepted else {})}


def implementation_flags(factory, use_cuda_graph: bool) -> dict:
    """fused / capturable / foreach as this run builds the optimizer, defaults included."""
    accepted = inspect.signature(getattr(factory, "func", factory)).parameters
    given = {**getattr(factory, "keywords", {}), **optimizer_options(factory, use_cuda_graph)}
    return {flag: given.get(flag, accepted[flag].default) for flag in ("fused", "capturable", "foreach")
            if flag in accepted}  # fmt: skip


def keep_implementation_flags(checkpoint: dict, factories, use_cuda_graph: bool) -> None:
    """Loading an optimizer's state replaces its param groups with the saved ones, flags included: a run resumed
    with model.cuda_graph switched on (or off) must keep the implementation it was built with. Lightning calls
    the module's on_load_checkpoint before it loads the optimizers, whose state torch then casts to match."""
    for state, factory in zip(checkpoint.get("optimizer_states", []), factories):
        for group in state.get("param_groups", []):
            group.update(implementation_flags(factory, use_cuda_graph))


def plain_learning_rates(checkpoint: dict) -> None:
    """model.cuda_graph keeps learning rates in device tensors; checkpoints hold plain numbers either way."""
    for state in checkpoint.get("optimizer_states", []):
        for group in state.get("param_groups", []):
            group.update({key: value.item() for key, value in group.items() if isinstance(value, torch.Tensor)})
    for state in checkpoint.get("lr_schedulers", []):
        if "_last_lr" in state:
            state["_last_lr"] = [lr.item() if isinstance(lr, torch.Tensor) else lr for lr in state["_last_lr"]]


def count_replayed_step(optimizers, generator_turn: bool) -> None:
    """A replayed graph steps the optimizers without Lightning seeing it; these are the calls with which
    LightningOptimizer.step keeps Lightning's optimizer-step count (trainer.global_step) in manual mode."""
    opt_g, opt_d = optimizers
    for optimizer in (opt_d, opt_g) if generator_turn else (opt_d,):
        optimizer._on_before_step()
        optimizer._on_after_step()
