"""An exponential moving average of the generator's weights that never waits for the device."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class GeneratorEMA(AveragedModel):
    """torch's AveragedModel with EMA weights (and buffers), whose update reads nothing back to the host.

    AveragedModel.update_parameters asks `n_averaged == 0` and `n_averaged > 0` of a device tensor, two host
    syncs per generator step on a GPU. Here a Python flag mirrors "has averaging started", set from the
    loaded `n_averaged` when a checkpoint is loaded (off the training step). Checkpoints keep
    AveragedModel's keys (`n_averaged`, `module.*`), so runs saved before load unchanged.
    """

    def __init__(self, generator: nn.Module, decay: float) -> None:
        super().__init__(generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay = decay
        self.requires_grad_(False)
        self._started = False

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [t.detach() for t in (*model.parameters(), *model.buffers())]
        if not self._started:  # the first update copies G, as AveragedModel's does
            for mine, theirs in zip(averaged, current, strict=True):
                mine.copy_(theirs)
        else:
            by_dtype: dict[torch.dtype, tuple[list, list]] = defaultdict(lambda: ([], []))
            for mine, theirs in zip(averaged, current, strict=True):
                by_dtype[mine.dtype][0].append(mine)
                by_dtype[mine.dtype][1].append(theirs)
            for mine, theirs in by_dtype.values():
                self.multi_avg_fn(mine, theirs, None)
        self.n_averaged += 1
        self._started = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if (count := state_dict.get(prefix + "n_averaged")) is not None:
            self._started = bool(count > 0)
