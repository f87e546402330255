"""How well the validation Parzen estimate selects checkpoints: for each checkpoint, val/parzen_ll as the
`parzen` callback computes it with several sample counts, beside the full test protocol.

    python scripts/parzen_selection.py outputs/table1/fashion_mnist/seed1/checkpoints/{epoch_0009,last}.ckpt \
        --samples 2000 10000 --data-root /path/to/data

A good selector ranks checkpoints as the test protocol does. Everything follows the run's own `parzen`
settings and seed (its samples do not depend on how many processes it ran on), so the column of the run's
val_samples repeats the val/parzen_ll it logged for that checkpoint, and the last column gan-train's test
stage. Runs that kept an EMA generator are scored with it. Prints a markdown table.
"""

from __future__ import annotations

import argparse

from gan.errors import GANError


def scores(path: str, sample_counts: list[int], data_root: str | None) -> tuple[int, list[float], str]:
    # torch loads here, so that a bad command line is refused at once
    from gan.metrics.checkpoint_parzen import CheckpointParzen
    from gan.utils.checkpoints import load_checkpoint

    checkpoint = CheckpointParzen(path, data_root)
    val_lls = [checkpoint.validation(n).ll for n in sample_counts]
    full = checkpoint.test()
    return load_checkpoint(path)["epoch"] + 1, val_lls, f"{full.ll:.1f} +- {full.se:.1f}"


def sample_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a sample count (an integer >= 1, e.g. 10000)")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--samples", nargs="+", type=sample_count, default=[2000, 10000], help="validation sample counts to compare")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args()

    print("| checkpoint | epoch | " + " | ".join(f"val/parzen_ll, {n} samples" for n in args.samples) + " | test protocol |")
    print("|---|---|" + "---|" * (len(args.samples) + 1))
    for path in args.checkpoints:
        try:
            epoch, val_lls, full = scores(path, args.samples, args.data_root)
        except GANError as error:
            parser.exit(2, f"parzen_selection: error: {error}\n")
        print(f"| {path} | {epoch} | " + " | ".join(f"{ll:.3f}" for ll in val_lls) + f" | {full} |", flush=True)


if __name__ == "__main__":
    main()
