"""docs/extending.md, executed: the files it shows are written to a fresh folder and its commands are run as shown."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
BLOCK = re.compile(r"<!-- (file: (?P<path>\S+)|run) -->\n```\w*\n(?P<body>.*?)```", re.S)


def _doc_files_and_commands() -> tuple[dict[str, str], list[str]]:
    files, commands = {}, []
    for match in BLOCK.finditer(DOC.read_text()):
        if match.group("path"):
            files[match.group("path")] = match.group("body")
        else:
            commands += [line for line in match.group("body").splitlines() if line.strip()]
    return files, commands


def test_the_extending_page_runs_as_written(tmp_path):
    files, commands = _doc_files_and_commands()
    assert {"my_lab/objectives.py", "my_lab/networks.py", "my_lab/data.py", "conf/experiment/my_study.yaml"} <= set(files)
    assert [c.split()[1] for c in commands] == ["gan-train", "gan-eval"]
    project = tmp_path / "my_project"
    for relative, body in files.items():
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text(body)
    # The console scripts of the Python running the tests, as a user's shell would find them on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HYDRA_FULL_ERROR": "0"}
    env.pop("PYTHONPATH", None)
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    run = project / "outputs" / "my_study"
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test/parzen_ll" in metrics and metrics["train/d_real"] >= 0  # the objective logs probabilities
    stored = __import__("torch").load(run / "checkpoints" / "last.ckpt", weights_only=False)["gan_config"]
    assert stored["model"]["objective"]["_target_"] == "my_lab.objectives.LabelSmoothed"
    assert stored["model"]["generator"]["_target_"] == "my_lab.networks.SkinnyGenerator"
    assert stored["data"]["_target_"] == "my_lab.data.BarsDataModule"
    evaluation = json.loads((run / "checkpoints" / "last.eval.json").read_text())
    assert evaluation["generator"] == "raw" and abs(evaluation["test/parzen_ll"]) < 1e4
