"""How well the validation Parzen estimate selects checkpoints: for each checkpoint, val/parzen_ll as the
`parzen` callback computes it with several sample counts, beside the full test protocol.

    python scripts/parzen_selection.py outputs/table1/fashion_mnist/seed1/checkpoints/{epoch_0008,last}.ckpt \
        --samples 2000 10000 --data-root ../shared/data

A good selector ranks checkpoints as the test protocol does. Everything follows the run's own `parzen`
settings and draws the samples as its processes did, so the column of the run's val_samples repeats the
val/parzen_ll it logged for that checkpoint, and the last column gan-train's test stage. Runs that kept an
EMA generator are scored with it. Prints a markdown table.
"""

from __future__ import annotations

import argparse

import torch

from gan.callbacks.parzen import ParzenLogLikelihood, samples_as_gathered
from gan.errors import ConfigError, GANError
from gan.utils.checkpoints import load_checkpoint, model_and_data_from_checkpoint


def processes(trainer_config: dict) -> int:
    """How many processes drew the run's samples (each its own share, with its own seed)."""
    devices = trainer_config.get("devices", 1)
    if isinstance(devices, list):
        devices = len(devices)
    if not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"the run used trainer.devices={devices!r}, so its process count is unknown here. "
                          "Fix: pass --processes N (its number of GPUs x nodes)")  # fmt: skip
    return devices * trainer_config.get("num_nodes", 1)


def scores(path: str, sample_counts: list[int], data_root: str | None, world: int | None) -> tuple[int, list[float], str]:
    model, data, stored = model_and_data_from_checkpoint(path, data_root)
    settings = (stored.get("callbacks") or {}).get("parzen")
    if not settings:
        raise ConfigError(f"{path} comes from a run without the parzen callback, so it logged no val/parzen_ll to repeat")
    parzen = ParzenLogLikelihood(**{key: value for key, value in settings.items() if key != "_target_"})
    world = world or processes(stored.get("trainer", {}))
    drawn: dict[int, torch.Tensor] = {}

    def samples(n: int) -> torch.Tensor:
        if n not in drawn:
            drawn[n] = samples_as_gathered(model, n, parzen.seed, parzen.sample_batch_size, world)
        return drawn[n]

    data.setup()
    val_lls = [parzen.score(data, samples(n), *parzen.validation_sets(data)).ll for n in sample_counts]
    full = parzen.score(data, samples(parzen.test_samples), *parzen.test_sets(data))
    return load_checkpoint(path)["epoch"], val_lls, f"{full.ll:.1f} +- {full.se:.1f}"


def sample_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a sample count (an integer >= 1, e.g. 10000)")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--samples", nargs="+", type=sample_count, default=[2000, 10000], help="validation sample counts to compare")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--processes", type=sample_count, default=None, help="default: the run's trainer.devices x num_nodes")
    args = parser.parse_args()

    print("| checkpoint | epoch | " + " | ".join(f"val/parzen_ll, {n} samples" for n in args.samples) + " | test protocol |")
    print("|---|---|" + "---|" * (len(args.samples) + 1))
    for path in args.checkpoints:
        try:
            epoch, val_lls, full = scores(path, args.samples, args.data_root, args.processes)
        except GANError as error:
            parser.exit(2, f"parzen_selection: error: {error}\n")
        print(f"| {path} | {epoch} | " + " | ".join(f"{ll:.3f}" for ll in val_lls) + f" | {full} |", flush=True)


if __name__ == "__main__":
    main()
