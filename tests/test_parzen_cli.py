"""`gan-parzen` (gan.metrics.parzen_cli): one JSON line equal to `parzen_protocol`, one-line errors with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gan.metrics import parzen_cli
from gan.metrics.parzen import DEFAULT_SIGMAS, parzen_protocol

KEYS = {"sigma", "ll", "se", "valid_ll", "num_centres", "num_points", "seconds"}


@pytest.fixture()
def arrays(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    samples = rng.random((150, 3, 4)).astype(np.float32)  # (N, ...): flattened to D = 12
    valid = (samples[:40].reshape(40, 12) + 0.1 * rng.standard_normal((40, 12))).astype(np.float64)
    test = (samples[40:75].reshape(35, 12) + 0.1 * rng.standard_normal((35, 12))).astype(np.float32)
    paths = {}
    for name, array in (("samples", samples), ("valid", valid), ("test", test)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], array)
    return paths


def argv(paths: dict[str, Path], *extra: str) -> list[str]:
    return ["--samples", str(paths["samples"]), "--valid", str(paths["valid"]), "--test", str(paths["test"]), *extra]


def expected(paths: dict[str, Path], sigmas=DEFAULT_SIGMAS):
    load = lambda name: torch.from_numpy(np.load(paths[name])).flatten(1)  # noqa: E731
    return parzen_protocol(load("samples"), load("valid"), load("test"), sigmas=list(sigmas))


def run_main(args, capsys) -> tuple[int, str, str]:
    code = parzen_cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def check_output(out: str, want) -> dict:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    got = json.loads(lines[0])
    assert set(got) == KEYS
    assert got["sigma"] == pytest.approx(want.sigma, rel=1e-12)
    assert got["ll"] == pytest.approx(want.ll, rel=1e-9)
    assert got["se"] == pytest.approx(want.se, rel=1e-9)
    assert got["valid_ll"] == pytest.approx(want.as_dict()["valid_ll"], rel=1e-9)
    assert got["num_centres"] == want.num_centres and got["num_points"] == want.num_points
    assert isinstance(got["seconds"], float) and 0 <= got["seconds"] < 60
    return got


# ------------------------------------------------------------------ good inputs


def test_main_default_sigmas_matches_parzen_protocol(arrays, capsys):
    code, out, err = run_main(argv(arrays), capsys)
    assert code == 0 and err == ""
    got = check_output(out, expected(arrays))
    assert len(got["valid_ll"]) == len(DEFAULT_SIGMAS)
    assert got["num_centres"] == 150 and got["num_points"] == 35
    # The reported sigma is the validation argmax among the printed values.
    best_key = max(got["valid_ll"], key=got["valid_ll"].get)
    assert float(best_key) == pytest.approx(got["sigma"], rel=1e-5)
    assert np.isfinite(got["ll"]) and got["se"] > 0


def test_main_custom_sigmas(arrays, capsys):
    code, out, _ = run_main(argv(arrays, "--sigmas", "0.05, 0.2,1"), capsys)
    assert code == 0
    got = check_output(out, expected(arrays, [0.05, 0.2, 1.0]))
    assert list(got["valid_ll"]) == ["0.05", "0.2", "1"]
    assert got["sigma"] in (0.05, 0.2, 1.0)


def test_main_accepts_integer_arrays(tmp_path, capsys):
    rng = np.random.default_rng(1)
    paths = {}
    for name, n in (("samples", 30), ("valid", 5), ("test", 6)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], rng.integers(0, 3, size=(n, 4)).astype(np.uint8))
    code, out, _ = run_main(argv(paths, "--sigmas", "0.5,1,2"), capsys)
    assert code == 0
    check_output(out, expected(paths, [0.5, 1.0, 2.0]))


def test_subprocess_prints_one_json_line(arrays):
    proc = subprocess.run(
        [sys.executable, "-m", "gan.metrics.parzen_cli", *argv(arrays, "--sigmas", "0.1,0.2,0.4", "--device", "cpu")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    check_output(proc.stdout, expected(arrays, [0.1, 0.2, 0.4]))


# ------------------------------------------------------------------ bad inputs: exit 2, one line


def write(tmp_path: Path, name: str, array) -> Path:
    path = tmp_path / name
    np.save(path, array)
    return path


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gan-parzen: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


BAD_FILES = {
    # name: (how to make the replacement file, which option gets it, words the message must contain)
    "missing": (lambda d: d / "nope.npy", "--samples", ["no such file", "nope.npy", "check the path"]),
    "text file": (
        lambda d: (d / "x.npy").write_text("1,2,3\n") and d / "x.npy",
        "--valid",
        ["not a .npy file", "numpy.save"],
    ),
    "npz archive": (
        lambda d: (np.savez(d / "a.npz", x=np.ones((3, 12))), d / "a.npz")[1],
        "--test",
        ["not a .npy file", "numpy.save"],
    ),
    "directory": (lambda d: d, "--samples", ["not a regular file"]),
    "object array": (
        lambda d: (np.save(d / "o.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True), d / "o.npy")[1],
        "--samples",
        ["cannot load", "numpy.save"],
    ),
    "complex": (lambda d: write(d, "c.npy", np.ones((3, 12), dtype=np.complex64)), "--valid", ["not real-valued"]),
    "nan": (
        lambda d: write(d, "n.npy", np.where(np.eye(5, 12) > 0, np.nan, 0.5)),
        "--valid",
        ["NaN, infinite", "row 0, feature 0", "remove or fix"],
    ),
    "inf": (
        lambda d: write(d, "i.npy", np.array([[0.5] * 12, [0.5] * 11 + [np.inf]])),
        "--test",
        ["NaN, infinite", "row 1, feature 11"],
    ),
    "beyond float32": (lambda d: write(d, "b.npy", np.full((2, 12), 1e300)), "--samples", ["float32 range"]),
    "mismatched dims": (
        lambda d: write(d, "m.npy", np.ones((4, 11))),
        "--test",
        ["test points have dimension 11 but the samples have 12", "same number of features"],
    ),
    "mismatched dims after flattening": (
        lambda d: write(d, "m.npy", np.ones((4, 2, 5))),
        "--valid",
        ["validation points have dimension 10 but the samples have 12"],
    ),
    "empty rows": (lambda d: write(d, "e.npy", np.ones((0, 12))), "--valid", ["empty", "at least one"]),
    "empty features": (lambda d: write(d, "e.npy", np.ones((5, 0))), "--samples", ["empty"]),
    "1-D": (lambda d: write(d, "v.npy", np.ones(12)), "--test", ["no feature axis", "reshape"]),
    "0-D": (lambda d: write(d, "s.npy", np.float32(3.0)), "--test", ["no feature axis"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_files_exit_2_with_one_line(case, arrays, tmp_path, capsys):
    make, option, needles = BAD_FILES[case]
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    paths = dict(arrays)
    paths[option.lstrip("-")] = make(bad_dir)
    code, out, err = run_main(argv(paths), capsys)
    assert_one_line_error(code, out, err, *needles)
    if case not in ("mismatched dims", "mismatched dims after flattening"):
        assert option in err


@pytest.mark.parametrize(
    "sigmas, needles",
    [
        ("0", ["'0' is not a finite positive bandwidth", "--sigmas 0.1,0.2"]),
        ("0.1,-0.2", ["'-0.2' is not a finite positive"]),
        ("0.1,inf", ["'inf' is not a finite positive"]),
        ("nan", ["'nan' is not a finite positive"]),
        ("abc", ["cannot parse 'abc'", "comma-separated positive numbers"]),
        ("0.1,,0.2", ["cannot parse ''"]),
        ("", ["cannot parse ''"]),
        ("0.1;0.2", ["cannot parse '0.1;0.2'"]),
        ("0.1,0.2,0.1", ["repeated value", "list each bandwidth once"]),
    ],
)
def test_bad_sigmas_exit_2_with_one_line(sigmas, needles, arrays, capsys):
    code, out, err = run_main(argv(arrays, f"--sigmas={sigmas}"), capsys)
    assert_one_line_error(code, out, err, "--sigmas", *needles)


def test_cuda_requested_but_unavailable(arrays, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = run_main(argv(arrays, "--device", "cuda"), capsys)
    assert_one_line_error(code, out, err, "--device cuda", "no CUDA device", "use --device cpu")


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--samples", "s.npy", "--valid", "v.npy"], ["required: --test", "--help"]),
        ([], ["required: --samples, --valid, --test"]),
        (["--device", "tpu"], ["invalid choice: 'tpu'", "--help"]),
        (["--sigmas"], ["--sigmas: expected one argument", "comma-separated list"]),
        (["--sigmas", "-0.1,0.2"], ["--sigmas: expected one argument", "--sigmas=VALUES"]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(args, needles, arrays, capsys):
    full = args if args and args[0] == "--samples" or not args else argv(arrays, *args)
    code, out, err = run_main(full, capsys)
    assert_one_line_error(code, out, err, *needles)


def test_subprocess_bad_input_exits_2_without_traceback(arrays, tmp_path):
    np.save(tmp_path / "nan.npy", np.full((3, 12), np.nan))
    paths = {**arrays, "test": tmp_path / "nan.npy"}
    proc = subprocess.run(
        [sys.executable, "-m", "gan.metrics.parzen_cli", *argv(paths)], capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "--test", "NaN, infinite")
