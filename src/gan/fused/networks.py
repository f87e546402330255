"""N networks of one architecture as one network over stacked weights: each member's forward pass, batched.

A fused network is a copy of the first member whose every parameter and buffer holds all members' values stacked
along a new leading dimension (so its state_dict has the members' keys, and member i is `tensor[i]`). Inputs and
outputs carry that dimension too: (members, batch, ...). Its forward pass
- runs every submodule without random layers as one `torch.func.vmap` over the members of `functional_call`
  (a Linear becomes one batched matmul, a Conv2d one batched convolution, BatchNorm keeps per-member statistics);
- gives every `nn.Dropout` each member's own mask, drawn from that member's generator (`MemberRandomness`) exactly
  as F.dropout draws it on the CPU, so member i sees the masks of a separate run of its seed;
- runs the code of modules that hold a dropout layer (a discriminator's `forward`) on the stacked tensors as
  written: correct when that code only works on the last dimensions, which `check_fused_forward` verifies.
vmap over `functional_call` is torch.func's recipe for model ensembling; random layers are the part it cannot do
per member as a separate run would (vmap's randomness="different" draws one new stream), hence `_MemberDropout`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.modules.dropout import _DropoutNd

from gan.fused import NotFusable


class MemberRandomness:
    """Each member's generator for the step being taken (set by the fused module); None: the global RNG."""

    def __init__(self) -> None:
        self.generators: list[torch.Generator] | None = None


class _Vmapped:
    """The forward of a random-free submodule, vmapped over the members (not an nn.Module: it must not register)."""

    def __init__(self, fused: nn.Module, template: nn.Module) -> None:
        # functional_call swaps every tensor of `template` for a member's slice: its own storage is never read, so it
        # lives on the meta device (no memory), and its class forward runs (the fused module's forward is this).
        self.fused, self.template = fused, template
        self._placeholders = [(module, slot, name, tensor) for module in template.modules()
                              for slot in ("_parameters", "_buffers")
                              for name, tensor in getattr(module, slot).items()]  # fmt: skip
        self._modes = list(zip(fused.modules(), template.modules(), strict=True))

    def _one_member(self, params, buffers, *inputs):
        return functional_call(self.template, (params, buffers), inputs, tie_weights=False)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        # Every name of a shared submodule (a generator's `output` is also `net[-1]`) gets its slice.
        params = dict(self.fused.named_parameters(remove_duplicate=False))
        buffers = dict(self.fused.named_buffers(remove_duplicate=False))
        for fused, template in self._modes:  # train/eval (batch norm, dropout) as the fused network is set now
            template.training = fused.training
        try:
            return vmap(self._one_member, randomness="error")(params, buffers, *inputs)
        finally:
            # functional_call restores one name of a shared submodule only, leaving a batched tensor in the template
            # (which a deepcopy, e.g. for the EMA, cannot copy): put the placeholders back.
            for module, slot, name, tensor in self._placeholders:
                getattr(module, slot)[name] = tensor


class _MemberDropout:
    """nn.Dropout with member i's mask from member i's generator: bernoulli_(1 - p), then / (1 - p), as ATen's CPU
    dropout computes it (CUDA's fused dropout draws differently: there, members match separate runs in law only)."""

    def __init__(self, module: nn.Dropout, randomness: MemberRandomness) -> None:
        self.module, self.randomness = module, randomness

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.module.p
        if not self.module.training or p == 0:
            return x
        generators = self.randomness.generators
        if generators is None:  # one global stream, a different mask per member (CUDA graphs capture this one)
            return nn.functional.dropout(x, p, training=True)
        masks = [torch.empty_like(member).bernoulli_(1 - p, generator=g).div_(1 - p) for member, g in zip(x, generators)]
        return x * torch.stack(masks)


def _has_random_layer(module: nn.Module) -> bool:
    return any(isinstance(m, _DropoutNd) for m in module.modules())


def fuse_networks(members: Sequence[nn.Module], randomness: MemberRandomness, where: str) -> nn.Module:
    """One network computing all `members` (same class and shapes, e.g. one per seed) at once; see the module doc."""
    shapes = [[(name, tuple(t.shape)) for name, t in m.state_dict().items()] for m in members]
    if any(type(m) is not type(members[0]) or s != shapes[0] for m, s in zip(members, shapes)):
        raise NotFusable(f"{where}: the members' networks differ in class or shape, so they cannot be stacked")
    fused = copy.deepcopy(members[0])
    params, buffers = stack_module_state(list(members))
    for name, stacked in params.items():
        module, leaf = _owner(fused, name)
        setattr(module, leaf, nn.Parameter(stacked, requires_grad=stacked.requires_grad))
    for name, stacked in buffers.items():
        module, leaf = _owner(fused, name)
        module._buffers[leaf] = stacked  # keeps the buffer's persistence
    _install_forwards(fused, members[0], randomness, where)
    fused.fused_members = len(members)
    return fused


def _owner(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (root.get_submodule(path) if path else root), leaf


def _install_forwards(fused: nn.Module, member: nn.Module, randomness: MemberRandomness, where: str) -> None:
    if not _has_random_layer(fused):
        fused.forward = _Vmapped(fused, copy.deepcopy(member).to("meta"))
    elif type(fused) is nn.Dropout:
        fused.forward = _MemberDropout(fused, randomness)
    elif isinstance(fused, _DropoutNd):
        raise NotFusable(f"{where}: {type(fused).__name__} layers cannot be fused (only nn.Dropout draws one mask per "
                          "member as a separate run does)")
    else:
        for (name, child), member_child in zip(fused.named_children(), member.children(), strict=True):
            _install_forwards(child, member_child, randomness, f"{where}.{name}")


def member_slice(fused: nn.Module, members: dict[int, nn.Module]) -> None:
    """Copy member i's share of the stacked weights into its own network, for each `i: network` (no autograd)."""
    with torch.no_grad():
        stacked = fused.state_dict(keep_vars=True)
        for i, member in members.items():
            for name, tensor in member.state_dict(keep_vars=True).items():
                tensor.copy_(stacked[name][i])


def stack_into(fused: nn.Module, members: Sequence[nn.Module]) -> None:
    """The members' current weights into the stacked ones (the inverse of `member_slice`, for all members)."""
    with torch.no_grad():
        stacked = fused.state_dict(keep_vars=True)
        for i, member in enumerate(members):
            for name, tensor in member.state_dict(keep_vars=True).items():
                stacked[name][i].copy_(tensor)


def check_fused_forward(fused: nn.Module, members: Sequence[nn.Module], example: torch.Tensor, where: str) -> None:
    """Refuse, before training, a network the fused pass gets wrong or cannot run: its own forward code mixes the
    members' dimension with the batch (e.g. `view(x.shape[0], ...)` in a module that also holds a dropout layer),
    or an operation has no batching rule in vmap (e.g. spectral norm's power iteration). The fused and separate
    passes are compared in eval mode; a training-mode forward and backward runs on a copy (its statistics and
    the generators' state stay as they are)."""
    batch = example.unsqueeze(0).expand(len(members), *example.shape)
    modes = [m.training for m in (fused, *members)]
    for m in (fused, *members):
        m.eval()
    try:
        with torch.no_grad():
            together, apart = fused(batch), torch.stack([member(example) for member in members])
        same = together.shape == apart.shape and torch.allclose(together, apart, rtol=1e-4, atol=1e-5)
        probe = copy.deepcopy(fused).train()
        probe(batch).float().sum().backward()
    except RuntimeError as error:
        raise NotFusable(f"{where} cannot be fused ({str(error).splitlines()[0]})") from None
    finally:
        for m, mode in zip((fused, *members), modes):
            m.train(mode)
    if not same:
        raise NotFusable(f"{where} cannot be fused: its forward code mixes the members' dimension with the "
                         "batch's (e.g. view(x.shape[0], ...) in a module that also holds a dropout layer)")
