"""How well the validation Parzen estimate selects checkpoints: for each checkpoint, val/parzen_ll as the
`parzen` callback computes it with several sample counts, beside the full test protocol (gan-eval's number).

    python scripts/parzen_selection.py outputs/table1/fashion_mnist/seed1/checkpoints/{epoch_0008,last}.ckpt \
        --samples 2000 10000 --data-root ../shared/data

A good selector ranks checkpoints as the test protocol does. Samples are drawn as the run's `parzen` callback
draws them (its seed; one process), so the column of the run's own val_samples repeats the val/parzen_ll it
logged for that checkpoint. Runs that kept an EMA generator are scored with it. Prints a markdown table.
"""

from __future__ import annotations

import argparse

from gan.callbacks.parzen import draw_samples
from gan.data.scaling import is_invertible
from gan.errors import GANError
from gan.metrics.parzen import parzen_protocol
from gan.utils.checkpoints import load_checkpoint, model_and_data_from_checkpoint


def scores(path: str, sample_counts: list[int], data_root: str | None) -> tuple[list[float], str]:
    model, data, stored = model_and_data_from_checkpoint(path, data_root)
    parzen = stored["callbacks"]["parzen"]
    data.setup()
    as_pixels = data.to_unit_range if is_invertible(data.scaling) else (lambda x: x)
    val, test = as_pixels(data.images("val")).flatten(1), as_pixels(data.images("test")).flatten(1)
    select, score = parzen["select_points"], parzen["val_points"]
    val_lls = []
    for n in sample_counts:
        samples = as_pixels(draw_samples(model, n, parzen["seed"], parzen["sample_batch_size"])).flatten(1)
        val_lls.append(parzen_protocol(samples, val[:select], val[select : select + score]).ll)
    samples = as_pixels(draw_samples(model, parzen["test_samples"], parzen["seed"], parzen["sample_batch_size"])).flatten(1)
    test_points = test[: parzen["test_points"]] if parzen["test_points"] else test
    full = parzen_protocol(samples, val[: parzen["test_select_points"]], test_points)
    return val_lls, f"{full.ll:.1f} +- {full.se:.1f}"


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
            val_lls, full = scores(path, args.samples, args.data_root)
        except GANError as error:
            parser.exit(2, f"parzen_selection: error: {error}\n")
        epoch = load_checkpoint(path)["epoch"]  # the epoch it was saved in (0-based)
        print(f"| {path} | {epoch} | " + " | ".join(f"{ll:.3f}" for ll in val_lls) + f" | {full} |", flush=True)


if __name__ == "__main__":
    main()
