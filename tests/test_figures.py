"""Figures 2 and 3, training curves, and scripts/make_figures.py on a real (tiny) checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from gan.figures import interpolation_grid, nearest_neighbour_grid, training_curves
from gan.figures.samples import nearest_training_images

REPO = Path(__file__).resolve().parents[1]


def test_nearest_training_image_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    train, samples = torch.rand(500, 1, 6, 6, generator=g), torch.rand(7, 1, 6, 6, generator=g)
    expected = train[torch.cdist(samples.flatten(1), train.flatten(1)).argmin(dim=1)]
    torch.testing.assert_close(nearest_training_images(samples, train, chunk=64), expected)
    # a sample that is a copy of a training image finds exactly that image
    assert torch.equal(nearest_training_images(train[123:124], train, chunk=50), train[123:124])


def test_nearest_training_images_converts_the_training_set_to_pixels_chunk_by_chunk():
    from gan.data.scaling import scale, to_unit_range

    g = torch.Generator().manual_seed(1)
    pixels, samples = torch.rand(300, 3, 4, 4, generator=g), torch.rand(5, 3, 4, 4, generator=g)
    for scaling in ("symmetric", "gcn"):  # gcn: a per-image stretch, not the inverse of the scaling
        train = scale(pixels, scaling)
        shown = to_unit_range(train, scaling)
        expected = shown[torch.cdist(samples.flatten(1), shown.flatten(1)).argmin(dim=1)]
        converted = []

        def to_pixels(images, scaling=scaling):
            converted.append(len(images))
            return to_unit_range(images, scaling)

        found = nearest_training_images(samples, train, chunk=64, to_pixels=to_pixels)
        torch.testing.assert_close(found, expected)
        assert max(converted) == 64 and sum(converted) == 300 + 5  # chunks, then the 5 neighbours found


def test_figure2_has_an_extra_column_of_neighbours():
    train = torch.rand(100, 1, 8, 8)
    grid = nearest_neighbour_grid(train[:12], train, columns=4)  # 3 rows of 4 samples + 1 neighbour column
    assert grid.shape == (3, 3 * 8 + 4 * 2, 5 * 8 + 6 * 2)
    # the last sample of each row is a training image, so its framed neighbour is that image (inside the frame)
    last_column = grid[0, 2 + 1 : 2 + 7, -(2 + 8) + 1 : -2 - 1]
    torch.testing.assert_close(last_column, train[3, 0, 1:7, 1:7])


def test_figure3_rows_start_and_end_at_the_endpoints():
    generate = lambda z: torch.sigmoid(z[:, :4]).view(-1, 1, 2, 2)  # noqa: E731  a linear-ish toy "generator"
    z0, z1 = torch.randn(3, 5), torch.randn(3, 5)
    grid = interpolation_grid(generate, z0, z1, steps=6)
    assert grid.shape[1:] == (3 * 2 + 4 * 2, 6 * 2 + 7 * 2)
    torch.testing.assert_close(grid[0, 2:4, 2:4], generate(z0[:1])[0, 0])
    torch.testing.assert_close(grid[0, 2:4, -4:-2], generate(z1[:1])[0, 0])


def test_training_curves_from_a_csv(tmp_path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train/d_loss,train/g_loss,val/parzen_ll\n0,0,0.7,0.69,\n0,1,0.6,0.8,\n0,1,,,12.5\n")
    out = training_curves(log, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_make_figures_script_on_a_checkpoint(fast_run, tiny_mnist_root, tmp_path):
    run_dir = fast_run
    out = tmp_path / "figs"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "make_figures.py"), "--ckpt",
                             str(run_dir / "checkpoints" / "last.ckpt"), "--out", str(out), "--data-root", str(tiny_mnist_root)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("figure2.png", "figure3.png", "curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    # the figures callback of the default config wrote them during training too
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == ["figure2_epoch_0001.png", "figure3_epoch_0001.png"]


def test_figure1_script_draws_four_panels_and_d_approaches_d_star(tmp_path):
    out = tmp_path / "figure1.png"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "figure1_toy.py"), "--out", str(out), "--epochs", "1",
                             "--output-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes()[:4] == b"\x89PNG"
    gap = float(result.stdout.strip().splitlines()[-1].split("=")[-1])
    assert gap < 0.15  # D trained against a fixed G is close to p_data / (p_data + p_g) (KDE of p_g, finite data)


def test_sample_grid_of_the_untrained_generator_is_not_overwritten_by_a_resume_in_epoch_0(tmp_path):
    from types import SimpleNamespace

    from gan.callbacks import SampleGrid

    grid, saved = SampleGrid(dirpath=str(tmp_path)), []
    grid.save = lambda trainer, module, name: saved.append(name)
    in_epoch_0 = SimpleNamespace(current_epoch=0, sanity_checking=False)
    grid.on_train_start(in_epoch_0, SimpleNamespace(batches_seen=0))  # a fresh run
    grid.on_train_start(in_epoch_0, SimpleNamespace(batches_seen=7))  # resumed after 7 batches of epoch 0
    assert saved == ["epoch_0000"]
