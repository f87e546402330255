"""`gan-parzen`: the paper's Parzen-window protocol on .npy arrays, one JSON line on stdout.

    gan-parzen --samples S.npy --valid V.npy --test T.npy [--sigmas 0.1,0.2] [--device cpu|cuda]

Arrays are (N, D) or (N, ...) (flattened to (N, D)), real-valued, finite. The output is
{"sigma", "ll", "se", "valid_ll": {sigma: mean validation ll}, "num_centres", "num_points", "seconds"},
`seconds` being the estimator's time only (no start-up, no file loading). Bad inputs exit with status 2 and
one line on stderr, `gan-parzen: error: <problem>; <fix>`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from gan.metrics.parzen import DEFAULT_SIGMAS, parzen_protocol, validate_inputs

PROG = "gan-parzen"
NPY_MAGIC = b"\x93NUMPY"


class InputError(Exception):
    """A bad command line or input file: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        if "--sigmas" in message and "expected one argument" in message:
            # `--sigmas -0.1,0.2` reads the list as an option: argparse's message alone does not say so.
            raise InputError(f"{message}; give a comma-separated list, as --sigmas=VALUES if it starts with '-'")
        raise InputError(f"{message}; run '{PROG} --help' for usage")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Gaussian Parzen-window log-likelihood (Goodfellow et al. 2014, Table 1 protocol): sigma is "
        "chosen on --valid, the mean log-likelihood and its standard error are reported on --test.",
    )
    parser.add_argument("--samples", required=True, help=".npy array of generator samples (the window centres), (N, D)")
    parser.add_argument("--valid", required=True, help=".npy array of validation points used to pick sigma, (N, D)")
    parser.add_argument("--test", required=True, help=".npy array of test points to score, (N, D)")
    parser.add_argument(
        "--sigmas",
        default=None,
        help="comma-separated positive bandwidths (default: the paper's logspace(-1, 0, 10))",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where to compute (default: cpu)")
    return parser


def parse_sigmas(text: str | None) -> list[float]:
    if text is None:
        return list(DEFAULT_SIGMAS)
    sigmas = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise InputError(
                f"--sigmas: cannot parse {item!r} as a number; pass comma-separated positive numbers, e.g. "
                "--sigmas 0.1,0.2"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise InputError(
                f"--sigmas: {item!r} is not a finite positive bandwidth; pass comma-separated positive numbers, "
                "e.g. --sigmas 0.1,0.2"
            )
        sigmas.append(value)
    keys = [f"{s:.6g}" for s in sigmas]  # the keys of valid_ll in the output
    if len(set(keys)) != len(keys):
        raise InputError(f"--sigmas: repeated value in {text!r}; list each bandwidth once")
    return sigmas


def load_points(path_text: str, option: str) -> torch.Tensor:
    """Load one .npy file as a float32 (N, D) tensor, or raise InputError naming the file and the fix."""
    path = Path(path_text)
    if not path.exists():
        raise InputError(f"{option} {path_text}: no such file; check the path")
    if not path.is_file():
        raise InputError(f"{option} {path_text}: not a regular file; pass a .npy file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except OSError as err:
        raise InputError(f"{option} {path_text}: cannot read ({err.strerror}); check the file's permissions") from None
    if magic != NPY_MAGIC:
        raise InputError(
            f"{option} {path_text}: not a .npy file (no NumPy header); save the array with numpy.save(path, array)"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"{option} {path_text}: cannot load the array ({reason}); save a numeric array with numpy.save(path, array)"
        ) from None
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{option} {path_text}: dtype {array.dtype} is not real-valued; save a float array, e.g. array.astype('float32')"
        )
    if array.ndim < 2:
        raise InputError(
            f"{option} {path_text}: shape {array.shape} has no feature axis; save an (N, D) array "
            "(reshape 1-D data with array.reshape(-1, 1))"
        )
    if array.shape[0] == 0 or array.size == 0:
        raise InputError(f"{option} {path_text}: the array is empty (shape {array.shape}); pass at least one (N>0, D>0) point")
    array = array.reshape(array.shape[0], -1)
    with np.errstate(over="ignore", invalid="ignore"):
        array32 = array.astype(np.float32)
    bad = ~np.isfinite(array32)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{option} {path_text}: {int(bad.sum())} value(s) are NaN, infinite or beyond float32 range "
            f"(first at row {row}, feature {col}); remove or fix those rows"
        )
    return torch.from_numpy(array32)


def run(argv: Sequence[str] | None = None) -> dict:
    """Parse, load, check and score; raises InputError for anything the user must fix."""
    args = _build_parser().parse_args(argv)
    sigmas = parse_sigmas(args.sigmas)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available to torch; use --device cpu")
    centres = load_points(args.samples, "--samples")
    valid = load_points(args.valid, "--valid")
    test = load_points(args.test, "--test")
    try:
        validate_inputs(centres, valid, test, sigmas=sigmas)
    except ValueError as err:
        fix = (
            "flatten every array to the same number of features D as --samples"
            if "dimension" in str(err)
            else "fix the input arrays"
        )
        raise InputError(f"{err}; {fix}") from None

    device = torch.device(args.device)
    start = time.perf_counter()
    result = parzen_protocol(centres.to(device), valid, test, sigmas=sigmas, check_inputs=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return {**result.as_dict(), "seconds": seconds}


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    try:
        output = run(argv)
    except InputError as err:
        return _fail(str(err), 2)
    except torch.OutOfMemoryError:
        return _fail("out of memory while scoring; use fewer samples or points, or --device cpu", 1)
    except MemoryError:
        return _fail("out of host memory; use fewer samples or points", 1)
    print(json.dumps(output), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
