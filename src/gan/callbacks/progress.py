"""What the console shows during training: Lightning's rich progress bar with the GAN's numbers, fed no faster
than it draws, and a one-line model summary."""

from __future__ import annotations

from fnmatch import fnmatchcase
from time import monotonic

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelSummary, RichProgressBar
from lightning.pytorch.utilities.model_summary import get_human_readable_count

# D's mean outputs on real and generated data under the paper's names; other keys show without "train/".
LABELS = {"train/d_real": "D(x)", "train/d_fake": "D(G(z))", "val/parzen_ll": "parzen"}


class ThrottledRichProgressBar(RichProgressBar):
    """Lightning's RichProgressBar, with the losses, D's outputs and the last `val/parzen_ll` beside the bar,
    epochs counted from 1, and its training bar updated at most `refresh_rate` times a second (the rate its
    display thread draws at) instead of after every batch.

    `metrics`: patterns of the logged metrics to show (objectives log different D statistics, so `train/d_*`
    takes whatever they log). The module logs them every `trainer.log_every_n_steps` batches; the bar reads
    them only after such a batch, when Lightning has just read them back for its loggers, so it adds no device
    sync of its own (without a logger, one per logging step). Every update re-reads the bar's state and moves
    its task: ~0.1-0.2 ms a batch on a CPU, measurable next to a short GAN step and invisible between two
    frames. The last batch of an epoch always updates, so the bar ends complete.
    """

    def __init__(self, refresh_rate: int = 1, metrics: tuple[str, ...] = ("train/d_*", "train/g_loss", "val/parzen_ll"),
                 **kwargs) -> None:  # fmt: skip
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.patterns = tuple(metrics)
        self._last_update = float("-inf")
        self._shown: dict[str, float] = {}  # label -> value, kept across epochs (the last val/parzen_ll)
        self._logged = False  # whether Lightning logs the batch that just ended

    def _wanted(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self.patterns)

    def _read_logged(self, trainer: Trainer) -> None:
        for name, value in trainer.callback_metrics.items():
            if not self._wanted(name):
                continue
            label = LABELS.get(name, name.removeprefix("train/"))
            self._shown[label] = value.item() if hasattr(value, "item") else float(value)

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        order = ["d_loss", "g_loss", "D(x)", "D(G(z))"]
        ordered = {label: self._shown[label] for label in order if label in self._shown}
        return {**ordered, **{label: value for label, value in self._shown.items() if label not in ordered}}

    def _init_progress(self, trainer: Trainer) -> None:
        super()._init_progress(trainer)
        if self._console is not None and not self._console.is_terminal:
            # A log file or pipe (a SLURM job's output) gets each epoch's final bar as one line: Rich writes a bar
            # there only when it stops, and at its 80 columns for a file the numbers would wrap over five lines.
            self._leave = True
            self._console.width = max(self._console.width, 160)

    def _get_train_description(self, current_epoch: int) -> str:
        # Epoch N is the N-th epoch: its samples and checkpoints are epoch_000N (epoch_0000.png: untrained G).
        description = f"Epoch {current_epoch + 1}" + (f"/{self.trainer.max_epochs}" if (self.trainer.max_epochs or 0) > 0 else "")
        return f"{description:{len(self.validation_description)}}"

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        # Lightning logs a batch's metrics after its batch-end hooks: before the next batch they are in.
        if self.is_enabled and self._logged:
            self._read_logged(trainer)
        self._logged = False

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        # (Lightning's own test of its logging interval; without it, read after every batch)
        self._logged = bool(getattr(getattr(trainer, "_logger_connector", None), "should_update_logs", True))
        now = monotonic()
        last_batch = batch_idx + 1 >= self.total_train_batches
        if not last_batch and self.refresh_rate > 0 and now - self._last_update < 1 / self.refresh_rate:
            return
        self._last_update = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_enabled:
            self._read_logged(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.is_enabled and not trainer.sanity_checking:
            self._read_logged(trainer)
            self._update_metrics(trainer, pl_module)
        super().on_validation_end(trainer, pl_module)


class CompactModelSummary(ModelSummary):
    """One line instead of Lightning's table (whose FLOPs column reads 0 for every GAN: nothing runs the
    module's forward): each top-level net with its class and parameter count."""

    def __init__(self) -> None:
        super().__init__(max_depth=1)

    @staticmethod
    def summarize(summary_data, total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes, total_flops: int = 0, **kwargs) -> None:  # fmt: skip
        from lightning.pytorch.callbacks.model_summary import log

        columns = dict(summary_data)
        nets = [f"{name} ({kind}) {count.strip()}" for name, kind, count in
                zip(columns["Name"], columns["Type"], columns["Params"]) if count.strip() not in ("0", "")]  # fmt: skip
        log.info(f"parameters: {', '.join(nets)}; {get_human_readable_count(trainable_parameters)} trainable, "
                 f"{model_size:.1f} MB")  # fmt: skip
