"""The README is a contract: its quick-start command runs and writes what the README says a run writes, it
stays short, and every relative link in it and in docs/ points to a file (and heading) that exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import run_cli, tiny_data_overrides

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 250
# The quick start made fast and offline: a tiny MNIST in the real file format, one epoch of a few batches, small
# Parzen sample counts (debug=fast), with the log named as in a normal run (debug=fast names it debug.log).
FAST_OFFLINE = ["debug=fast", "task_name=train", "trainer.max_epochs=1"]


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def quickstart_command(text: str) -> list[str]:
    """The one command of the fenced block that follows the `<!-- quickstart -->` marker."""
    match = re.search(r"<!-- quickstart -->\s*```\w*\n(.*?)```", text, flags=re.S)
    assert match, "README.md needs a <!-- quickstart --> marker right before the quick start's code block"
    commands = [line for line in match.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 1, f"the quick start should be one command, found {commands}"
    return shlex.split(commands[0], comments=True)


def always_written(text: str) -> list[str]:
    """Glob patterns of the files that README's 'What a run writes' table promises for every run (rows whose
    description starts with 'only' are conditional); XXXX stands for an epoch number."""
    section = text.split("## What a run writes", 1)[1].split("\n## ", 1)[0]
    patterns = []
    for row in re.findall(r"^\|(.+?)\|(.+?)\|\s*$", section, flags=re.M):
        paths, description = row[0], row[1].strip()
        if set(description) <= {"-", " "} or description == "content" or description.startswith("only"):
            continue
        patterns += [path.replace("XXXX", "*") for path in re.findall(r"`([^`]+)`", paths)]
    return patterns


def test_quickstart_command_writes_what_the_readme_says(tiny_mnist_root, tmp_path):
    text = README.read_text()
    command = quickstart_command(text)
    assert command[0] == "gan-train", command
    assert not any(arg.startswith("data.root=") for arg in command), "a newcomer's first command should need no data path"
    run_dir = tmp_path / "run"
    result = run_cli(command[0], *command[1:], *FAST_OFFLINE, *tiny_data_overrides(tiny_mnist_root),
                     f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    patterns = always_written(text)
    for expected in ("metrics.json", "samples/epoch_*.png", "checkpoints/last.ckpt", "csv/metrics.csv"):
        assert expected in patterns, f"the table 'What a run writes' no longer lists {expected}"
    missing = [pattern for pattern in patterns if not list(run_dir.glob(pattern))]
    assert not missing, f"README says a run writes {missing}, but {run_dir} holds {sorted(p.name for p in run_dir.iterdir())}"


def test_readme_stays_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail into docs/ (limit {MAX_README_LINES})"


def test_ci_runs_the_readmes_test_command():
    """.ci/run promises to run exactly the README's install-and-test command; keep the two identical."""
    section = README.read_text().split("## Tests", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, flags=re.S).group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text().splitlines(), f".ci/run does not run {command!r}"


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", without_code_blocks(path.read_text()), flags=re.M)
    return {github_anchor(heading) for heading in headings}


def relative_links(path: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code_blocks(path.read_text()))
    return [target for target in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # no http:, mailto:


DOC_PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        name = linked.relative_to(ROOT).as_posix() if linked.is_relative_to(ROOT) else str(linked)
        if not linked.exists():
            broken.append(f"{target} (no file {name})")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {name})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_link_checker_sees_links_and_headings():
    """The checks above would pass vacuously if the patterns stopped matching."""
    assert "docs/results.md" in relative_links(README)
    assert "docs/images/figure2_mnist.png" in relative_links(README)
    assert "table-1-on-mnist" in anchors(ROOT / "docs" / "results.md")
    assert github_anchor("Time to the paper's 225 nats") == "time-to-the-papers-225-nats"
    assert github_anchor("Checkpoint selection needs 10,000 samples") == "checkpoint-selection-needs-10000-samples"
