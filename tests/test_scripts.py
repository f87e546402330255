"""The reproduce and benchmark scripts run end to end (tiny settings; measured numbers: docs/results.md, docs/performance.md)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_data_overrides

REPO = Path(__file__).resolve().parents[1]


def reproduce_table1_module():
    """scripts/reproduce_table1.py as a module (scripts/ is not a package), for its pure helpers."""
    spec = importlib.util.spec_from_file_location("reproduce_table1", REPO / "scripts" / "reproduce_table1.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _mean_sd_se(two: list[float]) -> str:
    """mean +- sd (s.e.) of two values: sd = |a - b| / sqrt(2), s.e. = |a - b| / 2."""
    gap = abs(two[0] - two[1])
    return f"{sum(two) / 2:.1f} +- {gap / 2**0.5:.1f} (s.e. {gap / 2:.1f})"


def test_reproduce_table1_fused_trains_the_seeds_together_into_their_usual_folders(tiny_mnist_root, tmp_path):
    out = tmp_path / "table1"
    command = [sys.executable, str(REPO / "scripts" / "reproduce_table1.py"), "--fused", "--seeds", "1", "2",
               "--epochs", "1", "--data-root", str(tiny_mnist_root), "--out", str(out), "--", "debug=fast",
               *[o for o in tiny_data_overrides(tiny_mnist_root) if not o.startswith("data.root")]]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "hydra/launcher=fused" in result.stdout and len(list((out / "mnist").glob("fused_0-1_*/checkpoints/last.ckpt"))) == 1
    best = [json.loads((out / "mnist" / f"seed{s}" / "metrics.json").read_text()) for s in (1, 2)]
    assert best[0]["fused_seeds"] == [1, 2] and best[0]["wall_seconds"] == best[1]["wall_seconds"] > 0
    last = [json.loads((out / "mnist" / f"seed{s}" / "table1_last.json").read_text())["test/parzen_ll"] for s in (1, 2)]
    row = next(line for line in (out / "table1.md").read_text().splitlines() if line.startswith("| mnist_paper"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3] == _mean_sd_se(last)
    assert cells[7] == f"{best[0]['wall_seconds'] / 3600:.1f} h"  # the group's time, once
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and "gan.train" not in again.stdout


def test_reproduce_table1_writes_a_table_beside_the_papers(tiny_mnist_root, tmp_path):
    out = tmp_path / "table1"
    command = [sys.executable, str(REPO / "scripts" / "reproduce_table1.py"), "--datasets", "mnist", "--seeds", "1", "2",
               "--epochs", "1", "--data-root", str(tiny_mnist_root), "--out", str(out), "--", "debug=fast",
               *[o for o in tiny_data_overrides(tiny_mnist_root) if not o.startswith("data.root")]]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "table1.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| mnist_paper"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # the headline: the full protocol on the last checkpoint (gan-eval); beside it, gan-train's test of the best
    last = [json.loads((out / "mnist" / f"seed{s}" / "table1_last.json").read_text()) for s in (1, 2)]
    assert all(m["ckpt_path"].endswith("last.ckpt") and m["epochs"] == 1 for m in last)
    best = [json.loads((out / "mnist" / f"seed{s}" / "metrics.json").read_text()) for s in (1, 2)]
    # the wall-time column is the training time the run's Timer kept in its checkpoints (resumes included)
    timer = torch.load(out / "mnist" / "seed1" / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]["Timer"]
    assert best[0]["wall_seconds"] == pytest.approx(timer["time_elapsed"]["train"]) and best[0]["wall_seconds"] > 0
    lls = [m["test/parzen_ll"] for m in last]
    assert cells[2] == "1"  # epochs
    assert cells[3] == _mean_sd_se(lls)
    assert cells[4].startswith(f"seed 1: {lls[0]:.1f} +- {last[0]['test/parzen_se']:.1f}") and f"seed 2: {lls[1]:.1f}" in cells[4]
    assert f"seed 1: {best[0]['test/parzen_ll']:.1f}" in cells[5] and f"seed 2: {best[1]['test/parzen_ll']:.1f}" in cells[5]
    assert cells[6] == "225 +- 2"
    assert cells[4] == cells[5]  # after one epoch the best checkpoint is the last, and gan-eval samples with the run's seed
    # a second call reuses the finished runs and their evaluations instead of computing them again
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and "gan.train" not in again.stdout and "gan.eval" not in again.stdout
    # gan-eval's own file next to the checkpoint, rewritten by hand, does not change the table ...
    (out / "mnist" / "seed1" / "checkpoints" / "last.eval.json").write_text(json.dumps({"test/parzen_ll": 999.0}))
    assert subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path).returncode == 0
    assert (out / "table1.md").read_text() == table
    # ... but a record of another training step is scored again
    record = out / "mnist" / "seed1" / "table1_last.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "global_step": -1}))
    rescored = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert rescored.returncode == 0 and "gan.eval" in rescored.stdout and "gan.train" not in rescored.stdout
    assert (out / "table1.md").read_text() == table
    # ... but not with other settings: that would report the old runs under the new ones
    before = table
    other = [*command, "model.ema_decay=0.99"]
    refused = subprocess.run(other, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert refused.returncode != 0 and "gan.train" not in refused.stdout
    assert "holds a run started with other settings (differing: model.ema_decay=0.99)" in refused.stderr
    assert (out / "table1.md").read_text() == before
    # a larger --epochs trains the finished runs on from their last checkpoint, keeping the earlier test
    longer = [*command[:command.index("--epochs") + 1], "2", *command[command.index("--epochs") + 2:]]
    longer[longer.index("--seeds") + 1:longer.index("--seeds") + 3] = ["1"]  # one run is enough (and half the time)
    extended = subprocess.run(longer, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert extended.returncode == 0, extended.stderr[-3000:]
    assert "had a budget of 1 epochs; it goes on to 2" in extended.stdout
    assert "Restoring states from the checkpoint" in extended.stderr + extended.stdout
    run = out / "mnist" / "seed1"
    assert json.loads((run / "table1_last.json").read_text())["epochs"] == 2
    assert json.loads((run / "metrics.epochs1.json").read_text()) == best[0]
    assert json.loads((run / "metrics.json").read_text())["wall_seconds"] > best[0]["wall_seconds"]
    row = next(line for line in (out / "table1.md").read_text().splitlines() if line.startswith("| mnist_paper"))
    assert row.split("|")[3].strip() == "2" and "seed 2" not in row
    fewer = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert fewer.returncode != 0 and "gan.train" not in fewer.stdout
    assert "holds a run with a budget of 2 epochs, more than --epochs 1. Fix: pass --epochs 2" in fewer.stderr


def test_an_extended_runs_wall_time_counts_each_budget_once(tmp_path):
    script = reproduce_table1_module()
    assert script.wall_seconds_before(tmp_path) == 0.0
    for epochs, seconds in ((300, 100.0), (450, 160.0)):  # 100 s for 300 epochs, then 60 s more to 450
        (tmp_path / f"metrics.epochs{epochs}.json").write_text(json.dumps({"wall_seconds": seconds}))
    assert script.wall_seconds_before(tmp_path) == 160.0


def test_a_finished_run_trains_on_into_a_final_anneal_only_if_its_epochs_saw_the_same_schedule(tmp_path, capsys):
    script = reproduce_table1_module()
    recipe = ["experiment=mnist_paper", "seed=1", "model.ema_decay=0.9999"]

    def budget(epochs, anneal_epochs=None):
        return [*recipe, f"trainer.max_epochs={epochs}",
                *(script.anneal_overrides(epochs - anneal_epochs, anneal_epochs) if anneal_epochs else [])]

    script.check_settings(tmp_path, budget(600))
    script.check_settings(tmp_path, budget(700, anneal_epochs=100))  # epochs 0-599 trained as a fresh run would
    assert "had a budget of 600 epochs; it goes on to 700" in capsys.readouterr().out
    assert "model.g_scheduler.anneal_start_epoch=600" in (tmp_path / script.SETTINGS_FILE).read_text()
    script.check_settings(tmp_path, budget(700, anneal_epochs=100))  # the same settings again: resume or reuse
    for other in (budget(800, anneal_epochs=100), budget(800), budget(700, anneal_epochs=150)):  # would re-anneal
        with pytest.raises(SystemExit, match="holds a run started with other settings .*anneal"):
            script.check_settings(tmp_path, other)
    fresh = tmp_path / "fresh"
    script.check_settings(fresh, budget(600))
    with pytest.raises(SystemExit, match=r"differing: .*anneal_start_epoch=550"):  # would change epochs 550-599
        script.check_settings(fresh, budget(650, anneal_epochs=100))
    script.check_settings(fresh, [*budget(600), "model.g_scheduler.anneal_start_epoch=null"])  # the default: no anneal
    with pytest.raises(SystemExit, match="anneal_start_epoch=6e2 is not an epoch number. Fix: pass an integer"):
        script.check_settings(fresh, [*budget(700), "model.g_scheduler.anneal_start_epoch=6e2"])


def test_a_run_on_the_experiments_default_budget_records_it_and_can_be_extended(tmp_path, capsys):
    script = reproduce_table1_module()
    assert script.default_budget(["experiment=mnist_paper"]) == 300
    assert script.default_budget(["experiment=mnist_paper", "debug=fast"]) == 1
    assert script.default_budget(["model.kk=2"]) is None  # gan-train reports a bad override in its own line
    assert script.with_budget(["experiment=mnist_paper", "seed=1"]) == ["experiment=mnist_paper", "seed=1", "trainer.max_epochs=300"]
    # a folder recorded before budgets were always written: its budget is the experiment's default
    (tmp_path / script.SETTINGS_FILE).write_text(json.dumps(["experiment=mnist_paper", "seed=1"]))
    script.check_settings(tmp_path, ["experiment=mnist_paper", "seed=1", "trainer.max_epochs=450"])
    assert "had a budget of 300 epochs; it goes on to 450" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="a budget of 450 epochs, more than --epochs 300"):
        script.check_settings(tmp_path, script.with_budget(["experiment=mnist_paper", "seed=1"]))


def test_reproduce_table1_refuses_an_anneal_without_a_budget_in_one_line(tmp_path):
    script = str(REPO / "scripts" / "reproduce_table1.py")
    for arguments in (["--anneal-epochs", "100"], ["--epochs", "50", "--anneal-epochs", "100"]):
        result = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "the anneal is the budget's last N epochs. Fix: e.g. --epochs 700 --anneal-epochs 100" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_reproduce_table1_stops_in_one_line_when_a_run_fails(tiny_mnist_root, tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "reproduce_table1.py"), "--seeds", "1", "--data-root",
               str(tiny_mnist_root), "--out", str(tmp_path / "table1"), "--", "model.k=0"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "model.k=0 is invalid" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: gan.train exited with 1; its error is above")
    assert not (tmp_path / "table1" / "table1.md").exists()


def test_parzen_selection_refuses_bad_arguments_in_one_line(tmp_path):
    script = str(REPO / "scripts" / "parzen_selection.py")
    zero = subprocess.run([sys.executable, script, "--samples", "0", "x.ckpt"], capture_output=True, text=True, cwd=tmp_path)
    assert zero.returncode == 2 and "'0' is not a sample count (an integer >= 1" in zero.stderr
    missing = subprocess.run([sys.executable, script, "nope.ckpt"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("parzen_selection: error: ckpt_path=nope.ckpt does not exist")


def test_reproduce_table1_keeps_the_rows_of_datasets_it_did_not_run(tmp_path):
    script = reproduce_table1_module()
    table = tmp_path / "table1.md"
    fashion, old_mnist, new_mnist = ("| m | fashion_mnist | 80 | 321.3 | a | b | c | 1 h |", "| m | mnist | 1 | 5.0 | a | b | c | 0 h |",
                                     "| m | mnist | 300 | 230.0 | a | b | c | 2 h |")  # fmt: skip
    table.write_text("\n".join([script.HEADER, "|---|", fashion, "", "a note added by hand", old_mnist]) + "\n")
    assert script.merged_rows(table, {"mnist": new_mnist}) == [fashion, new_mnist]
    table.write_text("| an older format |\n|---|\n" + fashion + "\n")  # other columns: not mixed in
    assert script.merged_rows(table, {"mnist": new_mnist}) == [new_mnist]
    assert script.merged_rows(tmp_path / "none.md", {"mnist": new_mnist}) == [new_mnist]


def test_reproduce_table1_scores_tfd_per_fold_as_the_paper(tmp_path):
    from tests.helpers import write_tfd

    write_tfd(tmp_path / "data" / "TFD")
    out = tmp_path / "table1"
    small = ["debug=fast", "model.generator.hidden_sizes=[16,16]", "model.discriminator.hidden_units=[8,8]",
             "callbacks.parzen.test_samples=50", "data.batch_size=4",
             "callbacks.parzen.select_points=2", "callbacks.parzen.val_points=3"]  # fmt: skip
    command = [sys.executable, str(REPO / "scripts" / "reproduce_table1.py"), "--datasets", "tfd", "--folds", "0", "3",
               "--seeds", "1", "--epochs", "1", "--data-root", str(tmp_path / "data"), "--out", str(out), "--", *small]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lls = [json.loads((out / "tfd" / f"fold{f}" / "seed1" / "table1_last.json").read_text())["test/parzen_ll"] for f in (0, 3)]
    row = next(line for line in (out / "table1.md").read_text().splitlines() if line.startswith("| tfd_paper"))
    assert "(stage 1 only)" in row and "2057 +- 26 (over 5 folds)" in row
    assert f"fold 0 seed 1: {lls[0]:.1f}" in row and f"fold 3 seed 1: {lls[1]:.1f}" in row
    assert f"| {_mean_sd_se(lls)} |" in row
    config = (out / "tfd" / "fold3" / "seed1" / ".hydra" / "config.yaml").read_text()
    assert "fold: 3" in config


def test_bench_train_prints_the_framework_to_bare_ratio(tiny_mnist_root, tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--steps", "2", "--warmup", "1", "--repeats", "1",
               "--profile", "40", "--precision", "bf16-mixed", "--bare-eager", "--device", "cpu",
               "--data-root", str(tiny_mnist_root), "data.verify=false", "data.val_size=200"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["framework_steps_per_s"] > 0 and summary["bare_steps_per_s"] > 0
    assert abs(summary["ratio_median"] - summary["framework_steps_per_s"] / summary["bare_steps_per_s"]) < 1e-9
    assert summary["precision"] == "bf16-mixed" and summary["bare"] == "eager fp32"
    assert all(mib > 0 for mib in summary["peak_memory_mib"].values()) and set(summary["peak_memory_mib"]) == {"framework", "bare"}
    # --profile: the bare arm's heaviest functions with calls and seconds in both arms; the networks' matrix
    # products run in both, 2 G + 4 D layers' worth per batch at least (3 batches with the warm-up; the
    # framework runs one more, where its clock stops)
    start = next(i for i, line in enumerate(lines) if line.startswith("function (the bare arm heaviest first)"))
    rows = {line[:70].strip(): line[70:].split() for line in lines[start + 1 : start + 41]}
    linear = rows["{built-in method torch._C._nn.linear}"]
    assert int(linear[0]) >= 3 * 6 and int(linear[2]) >= 3 * 6 and float(linear[1]) > 0 and float(linear[3]) > 0


def test_bench_train_refuses_more_steps_than_one_epoch_holds_before_timing_anything(tiny_mnist_root, tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "bench_train.py"), "--steps", "100000", "--device", "cpu",
               "--data-root", str(tiny_mnist_root), "data.verify=false", "data.val_size=200"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "more than one epoch" in message and "ask for at most" in message
    assert "repeat" not in result.stdout  # refused before either arm ran
    result = subprocess.run([*command[:2], "--steps", "0"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2 and "--steps must be >= 1" in result.stderr.strip().splitlines()[-1]


def test_parzen_selection_repeats_the_runs_own_validation_and_test_numbers(tiny_mnist_root, tmp_path):
    import csv

    from tests.helpers import run_cli

    run_dir = tmp_path / "run"
    assert run_cli("gan-train", "debug=fast", f"hydra.run.dir={run_dir}", "callbacks.parzen.sigmas=[0.2,0.5]",
                   *tiny_data_overrides(tiny_mnist_root)).returncode == 0  # fmt: skip
    logged = [float(r["val/parzen_ll"]) for r in csv.DictReader((run_dir / "csv" / "metrics.csv").open()) if r["val/parzen_ll"]]
    tested = json.loads((run_dir / "metrics.json").read_text())  # gan-train's test of the best checkpoint (epoch 1)
    command = [sys.executable, str(REPO / "scripts" / "parzen_selection.py"), str(run_dir / "checkpoints" / "epoch_0001.ckpt"),
               "--samples", "100", "200", "--data-root", str(tiny_mnist_root)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    cells = [cell.strip() for cell in result.stdout.strip().splitlines()[-1].strip("|").split("|")]
    assert cells[1] == "1"  # epochs count from 1, as in the file name
    assert float(cells[3]) == pytest.approx(logged[-1], abs=1e-3)  # debug=fast validates with 200 samples
    assert float(cells[2]) != pytest.approx(logged[-1], abs=1e-3)
    assert cells[4] == f"{tested['test/parzen_ll']:.1f} +- {tested['test/parzen_se']:.1f}"
