"""Fused multi-seed training (gan.fused, hydra/launcher=fused): every member equals a separate run of its seed,
keeps a run folder of its own, and a killed fused run resumes exactly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from gan.fused import NotFusable
from gan.fused.networks import MemberRandomness, check_fused_forward, fuse_networks
from hydra_plugins.gan_fused_launcher import seed_groups
from tests.helpers import compose_train, run_cli, tiny_data_overrides, write_tiny_mnist

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.fixture(scope="module")
def mnist_2000(tmp_path_factory) -> Path:
    """2,000 training images (20 batches of mnist_paper's 100) and 200 held out, in MNIST's files."""
    return write_tiny_mnist(tmp_path_factory.mktemp("data"), n_train=2_200)


def _config(data: Path, seed: int, folder: Path, *overrides: str):
    return compose_train(["experiment=mnist_paper", "debug=fast", f"seed={seed}", f"paths.output_dir={folder}",
                          "trainer.limit_train_batches=20", "trainer.limit_val_batches=0", "test=false",
                          "~callbacks.figures", "~callbacks.sample_grid", *tiny_data_overrides(data), *overrides])  # fmt: skip


def _checkpoint(folder: Path) -> dict:
    return torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)


@pytest.mark.parametrize("overrides", [
    (),  # the released code: simultaneous updates
    ("model.update_scheme=alternating", "model.ema_decay=0.9", "model.discriminator.max_col_norm=0.5"),
], ids=["simultaneous", "alternating-ema-maxnorm"])  # fmt: skip
def test_each_member_equals_a_separate_run_of_its_seed_after_20_batches(mnist_2000, tmp_path, overrides):
    from gan.fused.train import FusedGroup
    from gan.train import train

    seeds = (1, 2)
    FusedGroup([_config(mnist_2000, s, tmp_path / f"fused{s}", *overrides) for s in seeds], [0, 1], tmp_path / "group").run()
    for seed in seeds:
        train(_config(mnist_2000, seed, tmp_path / f"alone{seed}", *overrides))
        fused, alone = _checkpoint(tmp_path / f"fused{seed}"), _checkpoint(tmp_path / f"alone{seed}")
        assert fused["gan_counters"] == alone["gan_counters"] == {"batches_seen": 20, "g": 20, "d": 20}
        assert fused["state_dict"].keys() == alone["state_dict"].keys()
        for name, value in alone["state_dict"].items():
            assert (fused["state_dict"][name].float() - value.float()).abs().max() <= 1e-4, name
        for fused_opt, alone_opt in zip(fused["optimizer_states"], alone["optimizer_states"], strict=True):
            for index, state in alone_opt["state"].items():
                assert torch.allclose(fused_opt["state"][index]["momentum_buffer"], state["momentum_buffer"], atol=1e-4)
        assert fused["callbacks"].keys() == alone["callbacks"].keys()
        assert fused["gan_config"]["seed"] == seed and fused["loops"] == alone["loops"]
    # the members differ from each other: their own initialisation, noise, masks and data order
    one, two = _checkpoint(tmp_path / "fused1"), _checkpoint(tmp_path / "fused2")
    assert not torch.allclose(one["state_dict"]["generator.output.weight"], two["state_dict"]["generator.output.weight"])


def test_a_fused_sweep_gives_every_job_its_own_folder_that_gan_eval_scores(mnist_2000, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("gan-train", "-m", "experiment=mnist_paper", "debug=fast", "seed=1,2", "hydra/launcher=fused",
                     f"hydra.sweep.dir={sweep}", *tiny_data_overrides(mnist_2000), env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "jobs 0, 1 train together" in output and "0 failed" in output
    for job, seed in ((0, 1), (1, 2)):
        folder = sweep / str(job)
        for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "csv/metrics.csv", "samples/epoch_0001.png",
                     "figures/figure2_epoch_0001.png", "checkpoints/last.ckpt", "metrics.json", "debug.log"):
            assert (folder / name).exists(), name
        assert f"seed={seed}" in (folder / ".hydra" / "overrides.yaml").read_text()
        header = (folder / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
        assert {"step", "epoch", "train/d_loss", "train/g_loss", "val/parzen_ll", "val/d_real"} <= set(header)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert {"val/parzen_ll", "test/parzen_ll", "train/d_loss"} <= metrics.keys()
        assert _checkpoint(folder)["gan_config"]["seed"] == seed
    scored = run_cli("gan-eval", f"ckpt_path={sweep / '1' / 'checkpoints' / 'last.ckpt'}", f"data.root={mnist_2000}",
                     "trainer.accelerator=cpu", "callbacks.parzen.test_samples=200", "callbacks.parzen.test_points=200",
                     env=ENV)  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "test/parzen_ll" in scored.stdout + scored.stderr
    # a member's folder continues as a run alone: one more epoch of job 1 from its last.ckpt
    alone = run_cli("gan-train", "experiment=mnist_paper", "debug=fast", "seed=2", "trainer.max_epochs=2", "test=false",
                    f"hydra.run.dir={sweep / '1'}", "auto_resume=true", *tiny_data_overrides(mnist_2000), env=ENV)  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert _checkpoint(sweep / "1")["epoch"] == 1 and (sweep / "1" / "samples" / "epoch_0002.png").exists()


def test_sigkill_of_a_fused_run_then_auto_resume_gives_bit_identical_members(mnist_2000, tmp_path):
    common = ["experiment=mnist_paper", "debug=fast", "seed=1,2", "hydra/launcher=fused", "trainer.max_epochs=2",
              "test=false", "~callbacks.figures", "~callbacks.sample_grid",
              "trainer.limit_train_batches=6", "callbacks.model_checkpoint.monitor=null",
              "callbacks.model_checkpoint.every_n_epochs=null",
              "callbacks.model_checkpoint.every_n_train_steps=8",  # global_step counts D and G steps: every 4 batches
              "+callbacks.final._target_=tests.fault_injection.SaveFinalWeights",
              "+callbacks.final.path=${paths.output_dir}/final.pt", *tiny_data_overrides(mnist_2000)]  # fmt: skip
    reference = run_cli("gan-train", "-m", *common, f"hydra.sweep.dir={tmp_path / 'uninterrupted'}", env=ENV)
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed_dir = tmp_path / "killed"
    kill = ["+callbacks.kill._target_=tests.fault_injection.KillAtBatch", "+callbacks.kill.batch=10"]
    killed = run_cli("gan-train", "-m", *common, *kill, f"hydra.sweep.dir={killed_dir}", env=ENV)
    assert killed.returncode == -9
    (group,) = killed_dir.glob("fused_0-1_*")
    at_kill = torch.load(group / "checkpoints" / "last.ckpt", weights_only=False)
    assert at_kill["gan_counters"]["batches_seen"] == 8 and at_kill["epoch"] == 1  # mid-epoch 2, 2 batches lost
    again = run_cli("gan-train", "-m", *common, "auto_resume=true", f"hydra.sweep.dir={killed_dir}", env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 job(s), 0 failed" in again.stdout + again.stderr
    for job in ("0", "1"):
        expected = torch.load(tmp_path / "uninterrupted" / job / "final.pt")
        got = torch.load(killed_dir / job / "final.pt")
        for name, value in expected.items():
            assert torch.equal(got[name], value), (job, name)


def test_a_member_that_stops_keeps_its_weights_while_the_others_train_on(mnist_2000, tmp_path):
    result = run_cli("gan-train", "-m", "experiment=mnist_paper", "debug=fast", "seed=1,2", "hydra/launcher=fused",
                     "trainer.limit_train_batches=6", "callbacks.model_checkpoint.monitor=null", "test=false",
                     "~callbacks.figures", "~callbacks.sample_grid", "~callbacks.parzen",
                     "+callbacks.stop._target_=tests.fault_injection.StopAtBatch", "+callbacks.stop.batch=2",
                     "+callbacks.stop.seed=1", "+callbacks.final._target_=tests.fault_injection.SaveFinalWeights",
                     "+callbacks.final.path=${paths.output_dir}/final.pt", f"hydra.sweep.dir={tmp_path}",
                     *tiny_data_overrides(mnist_2000), env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "job 0 (seed=1) stopped at epoch 1" in result.stdout + result.stderr
    assert not (tmp_path / "0" / "final.pt").exists()  # its callbacks ran no more: no on_train_end
    assert torch.load(tmp_path / "1" / "final.pt") and (tmp_path / "0" / "metrics.json").exists()
    stopped = torch.load(tmp_path / "0" / "checkpoints" / "last.ckpt", weights_only=False)  # its state at the stop
    assert stopped["gan_counters"]["batches_seen"] == 2 and _checkpoint(tmp_path / "1")["gan_counters"]["batches_seen"] == 6


def test_jobs_that_cannot_be_fused_run_one_after_another_saying_why(mnist_2000, tmp_path):
    result = run_cli("gan-train", "-m", "experiment=mnist_paper", "debug=fast", "seed=1,2", "hydra/launcher=fused",
                     "model.objective.r1_gamma=1", "trainer.limit_train_batches=2", "test=false", "callbacks=none",
                     f"hydra.sweep.dir={tmp_path}", *tiny_data_overrides(mnist_2000), env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "jobs 0, 1 run one after another: GAN2014(r1_gamma=1.0" in output and "has a D regulariser" in output
    assert "train together" not in output
    assert (tmp_path / "0" / "metrics.json").exists() and (tmp_path / "1" / "metrics.json").exists()
    assert not list(tmp_path.glob("fused_*"))


def test_a_bad_group_size_is_refused_in_one_line(tmp_path):
    result = run_cli("gan-train", "-m", "debug=fast", "seed=1,2", "hydra/launcher=fused", "hydra.launcher.max_members=0",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", env=ENV)  # fmt: skip
    assert result.returncode == 1 and not (tmp_path / "sweep" / "0").exists()
    assert result.stderr.strip() == ("error: hydra.launcher.max_members=0 is invalid: must be an integer >= 1 "
                                     "(e.g. hydra.launcher.max_members=8)")  # fmt: skip


def test_a_group_checkpoint_is_continued_only_with_auto_resume(mnist_2000, tmp_path):
    from gan.errors import ConfigError
    from gan.fused.train import FusedGroup

    (tmp_path / "group" / "checkpoints").mkdir(parents=True)
    (tmp_path / "group" / "checkpoints" / "last.ckpt").write_bytes(b"")
    configs = [_config(mnist_2000, s, tmp_path / f"job{s}") for s in (1, 2)]
    with pytest.raises(ConfigError, match="holds the checkpoint of an earlier fused run of these jobs; pass auto_resume"):
        FusedGroup(configs, [0, 1], tmp_path / "group")
    assert not (tmp_path / "job1").exists()  # refused before anything is written


def test_the_group_folder_is_found_again_by_the_same_seeds_only(tmp_path):
    from gan.fused.train import group_folder

    first = group_folder(tmp_path, [0, 1], [["seed=1", "model.k=2"], ["seed=2", "model.k=2"]])
    again = group_folder(tmp_path, [0, 1], [["seed=1", "model.k=2", "auto_resume=true", "trainer.max_epochs=9"],
                                            ["seed=2", "model.k=2", "auto_resume=true", "trainer.max_epochs=9"]])  # fmt: skip
    other_seeds = group_folder(tmp_path, [0, 1], [["seed=3", "model.k=2"], ["seed=4", "model.k=2"]])
    assert first == again != other_seeds and first.name.startswith("fused_0-1_")


def test_jobs_are_grouped_by_everything_but_the_seed():
    jobs = [(0, ["seed=1", "model.k=1"]), (1, ["seed=2", "model.k=1"]), (2, ["seed=1", "model.k=2"]),
            (3, ["model.k=3"]), (4, ["seed=3", "model.k=1"])]  # fmt: skip
    assert [[n for n, _ in group] for group in seed_groups(jobs, max_members=64)] == [[0, 1, 4], [2], [3]]
    assert [[n for n, _ in group] for group in seed_groups(jobs, max_members=2)] == [[0, 1], [4], [2], [3]]


def _networks(kind: str, seeds=(0, 1)) -> list[nn.Module]:
    from gan.networks.dcgan import DCGANDiscriminator, DCGANGenerator
    from gan.networks.mlp import MaxoutDiscriminator, PyTorchGANGenerator

    build = {"maxout": lambda: MaxoutDiscriminator((1, 28, 28), hidden_units=(16, 16)),
             "batchnorm": lambda: PyTorchGANGenerator(8, (1, 4, 4), hidden_sizes=(8, 8)),
             "dcgan_g": lambda: DCGANGenerator(8, (1, 28, 28), base_channels=4),
             "dcgan_d": lambda: DCGANDiscriminator((1, 28, 28), base_channels=4)}[kind]  # fmt: skip
    networks = []
    for seed in seeds:
        torch.manual_seed(seed)
        networks.append(build())
    return networks


@pytest.mark.parametrize("kind, shape", [("maxout", (1, 28, 28)), ("batchnorm", (8,)), ("dcgan_g", (8,)),
                                         ("dcgan_d", (1, 28, 28))])  # fmt: skip
def test_a_fused_network_computes_each_members_pass_its_gradients_and_statistics(kind, shape):
    """Training mode: member i's output, gradients and batch-norm running statistics are those of its own network
    given member i's generator for its dropout masks; eval mode too."""
    members, randomness = _networks(kind), MemberRandomness()
    fused = fuse_networks(members, randomness, "net")
    inputs = torch.rand(2, 5, *shape)
    randomness.generators = [torch.Generator().manual_seed(10 + i) for i in range(2)]
    together = fused(inputs)
    together.square().sum().backward()
    stacked = fused.state_dict(keep_vars=True)
    for i, member in enumerate(members):
        torch.manual_seed(10 + i)  # a run alone draws its masks from the global RNG seeded so
        alone = member(inputs[i])
        alone.square().sum().backward()
        assert torch.allclose(together[i], alone, atol=1e-5)
        for name, tensor in member.state_dict(keep_vars=True).items():
            assert torch.allclose(stacked[name][i], tensor, atol=1e-5), name  # running statistics per member
            if isinstance(tensor, nn.Parameter):
                assert torch.allclose(stacked[name].grad[i], tensor.grad, atol=1e-4), name
    for network in (fused, *members):
        network.eval()
    with torch.no_grad():
        assert torch.allclose(fused(inputs), torch.stack([m(x) for m, x in zip(members, inputs)]), atol=1e-5)


def test_an_objective_that_vmap_cannot_batch_is_refused_in_one_line():
    from gan.fused.module import FusedObjective
    from gan.objectives import GAN2014

    class ReadsBack(GAN2014):  # a user's objective that reads a value back to Python inside its loss
        def generator_loss(self, fake_out):
            return fake_out.mean() * float(fake_out.max().item() > 0)

    FusedObjective(GAN2014()).check_batchable(3)
    with pytest.raises(NotFusable, match=r"model.objective \(ReadsBack.*\) cannot be fused"):
        FusedObjective(ReadsBack()).check_batchable(3)


class _MixesMembers(nn.Module):
    """A network whose own forward (not a submodule's) reshapes by the first dimension, beside a dropout layer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.dropout = nn.Linear(4, 3), nn.Dropout(0.5)

    def forward(self, x):
        return self.dropout(self.linear(x)).reshape(x.shape[0], -1).sum(-1)


def test_a_network_that_cannot_be_fused_is_refused_in_one_line():
    nets = [_MixesMembers() for _ in range(2)]
    fused = fuse_networks(nets, MemberRandomness(), "model.discriminator")
    with pytest.raises(NotFusable, match="mixes the members' dimension with the batch's"):
        check_fused_forward(fused, nets, torch.rand(3, 4), "model.discriminator")
    from gan.networks.dcgan import DCGANDiscriminator

    with pytest.raises(NotFusable, match="cannot be fused .Batching rule not implemented"):  # spectral norm's u update
        nets = [DCGANDiscriminator((1, 28, 28), base_channels=4, spectral_norm=True) for _ in range(2)]
        check_fused_forward(fuse_networks(nets, MemberRandomness(), "D"), nets, torch.rand(3, 1, 28, 28), "D")
    with pytest.raises(NotFusable, match="Dropout2d layers cannot be fused"):
        fuse_networks([nn.Sequential(nn.Conv2d(1, 1, 3), nn.Dropout2d()) for _ in range(2)], MemberRandomness(), "D")
