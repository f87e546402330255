"""model.ema_decay: an exponential moving average of the generator, updated after every G step, saved in
checkpoints, and the network `sample()` (hence every metric and figure) draws from."""

from __future__ import annotations

import json

import pytest
import torch
from lightning import Callback

from tests.helpers import RandomImages, cpu_trainer, run_cli, small_gan, tiny_data_overrides

DECAY = 0.9


def _params(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


class RecordSteps(Callback):
    """The generator's and its EMA's weights around every training batch (each batch is one G step here)."""

    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append({"ema_before": _params(pl_module.generator_ema.module),
                           "n_before": int(pl_module.generator_ema.n_averaged)})  # fmt: skip

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps[-1].update(g_after=_params(pl_module.generator), ema_after=_params(pl_module.generator_ema.module),
                              n_after=int(pl_module.generator_ema.n_averaged))  # fmt: skip


@pytest.mark.parametrize("update_scheme", ["simultaneous", "alternating"])
def test_ema_follows_decay_times_old_plus_one_minus_decay_times_new_after_every_g_step(update_scheme):
    torch.manual_seed(0)
    model = small_gan(update_scheme=update_scheme, ema_decay=DECAY, lr=0.1)
    recorder = RecordSteps()
    cpu_trainer(callbacks=[recorder], limit_train_batches=4).fit(model, RandomImages.make(n_train=64, batch_size=8))
    assert [s["n_after"] for s in recorder.steps] == [1, 2, 3, 4]
    # torch's AveragedModel starts the average at the first update: the EMA copies G after the first G step
    # (W_0^EMA = W_0 of its docs), then W^EMA <- decay * W^EMA + (1 - decay) * W^G after each later one.
    first = recorder.steps[0]
    for name, value in first["g_after"].items():
        torch.testing.assert_close(first["ema_after"][name], value)
    for step in recorder.steps[1:]:
        for name, new in step["g_after"].items():
            expected = DECAY * step["ema_before"][name] + (1 - DECAY) * new
            torch.testing.assert_close(step["ema_after"][name], expected)
    last = recorder.steps[-1]
    assert any(not torch.equal(last["ema_after"][n], last["g_after"][n]) for n in last["g_after"])  # it lags G


def test_ema_updates_only_on_g_steps_with_k_greater_than_one():
    model = small_gan(update_scheme="alternating", k=2, ema_decay=DECAY)
    recorder = RecordSteps()
    cpu_trainer(callbacks=[recorder], limit_train_batches=4).fit(model, RandomImages.make(n_train=64, batch_size=8))
    assert [s["n_after"] for s in recorder.steps] == [0, 1, 1, 2] and model.steps == {"g": 2, "d": 4}


def test_ema_is_saved_in_the_checkpoint_and_restored(tmp_path):
    torch.manual_seed(0)
    model = small_gan(ema_decay=DECAY, lr=0.1)
    trainer = cpu_trainer(limit_train_batches=3)
    trainer.fit(model, RandomImages.make(n_train=64, batch_size=8))
    path = tmp_path / "ema.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    ema_keys = [k for k in state if k.startswith("generator_ema.")]
    assert "generator_ema.n_averaged" in ema_keys and int(state["generator_ema.n_averaged"]) == 3
    assert any(k.startswith("generator_ema.module.") for k in ema_keys)

    restored = small_gan(ema_decay=DECAY, lr=0.1)
    assert any(not torch.equal(a, b) for a, b in zip(_params(restored.generator_ema.module).values(),
                                                    _params(model.generator_ema.module).values()))  # fmt: skip
    resumed = cpu_trainer(max_epochs=2, limit_train_batches=3)
    recorder = RecordSteps()
    resumed.callbacks.append(recorder)
    resumed.fit(restored, RandomImages.make(n_train=64, batch_size=8), ckpt_path=path, weights_only=False)
    # At the first batch after the restore, the EMA is the saved one (not a fresh copy of G) and keeps averaging.
    saved = {k.removeprefix("generator_ema.module."): v for k, v in state.items() if k.startswith("generator_ema.module.")}
    for name, value in recorder.steps[0]["ema_before"].items():
        torch.testing.assert_close(value, saved[name])
    assert recorder.steps[0]["n_before"] == 3 and int(restored.generator_ema.n_averaged) == 6
    new = recorder.steps[0]["g_after"]
    for name, value in recorder.steps[0]["ema_after"].items():
        torch.testing.assert_close(value, DECAY * saved[name] + (1 - DECAY) * new[name])


def test_sample_draws_from_the_ema_generator_when_enabled_and_from_g_otherwise():
    torch.manual_seed(0)
    with_ema = small_gan(ema_decay=DECAY, lr=0.1)
    cpu_trainer(limit_train_batches=3).fit(with_ema, RandomImages.make(n_train=64, batch_size=8))
    z = with_ema.noise(5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        from_ema, from_g = with_ema.generator_ema.module(z), with_ema.generator(z)
    assert not torch.equal(from_ema, from_g)
    torch.testing.assert_close(with_ema.sample(5, noise=z), from_ema)
    seeded = [with_ema.sample(5, generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    torch.testing.assert_close(seeded[0], from_ema)
    torch.testing.assert_close(seeded[1], from_ema)

    torch.testing.assert_close(with_ema.sample(5, noise=z, ema=False), from_g)
    with_ema.sample_from_ema = False  # what gan-eval use_ema=false sets
    torch.testing.assert_close(with_ema.sample(5, noise=z), from_g)

    without = small_gan(lr=0.1)
    cpu_trainer(limit_train_batches=3).fit(without, RandomImages.make(n_train=64, batch_size=8))
    assert without.generator_ema is None
    with torch.no_grad():
        torch.testing.assert_close(without.sample(5, noise=z), without.generator(z))


def test_gan_eval_scores_the_ema_generator_by_default_and_the_raw_one_with_use_ema_false(tiny_mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    # Adam moves every weight by about lr per step: after a few steps the EMA is visibly behind G.
    trained = run_cli("gan-train", "debug=fast", "experiment=mnist_pytorch_gan", "test=false", "model.ema_decay=0.5",
                      f"hydra.run.dir={run_dir}",
                      *tiny_data_overrides(tiny_mnist_root), cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    reports = {}
    for use_ema, suffix in (("true", ".eval.json"), ("false", ".raw.eval.json")):
        result = run_cli("gan-eval", f"ckpt_path={checkpoint}", f"use_ema={use_ema}", "debug=fast",
                         f"data.root={tiny_mnist_root}", f"hydra.run.dir={tmp_path / use_ema}", cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        reports[use_ema] = json.loads(checkpoint.with_suffix(suffix).read_text())
    assert reports["true"]["generator"] == "ema" and reports["false"]["generator"] == "raw"
    assert abs(reports["true"]["test/parzen_ll"] - reports["false"]["test/parzen_ll"]) > 1e-3
    # the run's own test protocol is used, and a protocol key set on the command line wins over it
    stored = torch.load(checkpoint, weights_only=False)["gan_config"]["callbacks"]["parzen"]
    assert reports["true"]["parzen"]["num_centres"] == stored["test_samples"]
    result = run_cli("gan-eval", f"ckpt_path={checkpoint}", "callbacks.parzen.test_samples=37", "debug=fast",
                     f"data.root={tiny_mnist_root}", f"hydra.run.dir={tmp_path / 'override'}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(checkpoint.with_suffix(".eval.json").read_text())["parzen"]["num_centres"] == 37


def test_validation_d_of_g_is_measured_on_the_generator_d_trains_against_not_its_ema():
    torch.manual_seed(0)
    model = small_gan(ema_decay=DECAY, lr=0.1)  # no dropout: D is deterministic
    cpu_trainer(limit_train_batches=3).fit(model, RandomImages.make(n_train=64, batch_size=8))
    with torch.no_grad():  # an average far from G, so that D tells the two apart
        for p in model.generator_ema.module.parameters():
            p.fill_(1.0)
    logged = {}
    model.log_dict = lambda metrics, **kwargs: logged.update(metrics)
    real = torch.rand(16, 1, 8, 8)
    torch.manual_seed(7)
    model._evaluate_d(real, "val")
    torch.manual_seed(7)
    z = model.noise(16)
    with torch.no_grad():
        raw, ema = (torch.sigmoid(model.discriminator(g(z))).mean() for g in (model.generator, model.generator_ema.module))
    assert abs(float(raw - ema)) > 1e-5  # D is still near 1/2 everywhere, but not the same on both
    torch.testing.assert_close(logged["val/d_fake"], raw, rtol=0, atol=1e-8)


def test_generator_ema_matches_torchs_averaged_model_and_resumes_from_its_state_dict():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from gan.ema import GeneratorEMA

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6))  # float and int64 buffers
    ours, torchs = GeneratorEMA(net, DECAY), AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=True)
    for step in range(4):
        net(torch.randn(8, 4))  # moves BatchNorm's running statistics and counter
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        if step == 2:  # a fresh EMA loaded from a checkpoint goes on averaging, not copying
            resumed = GeneratorEMA(torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6)), DECAY)
            resumed.load_state_dict(ours.state_dict())
            ours = resumed
        ours.update_parameters(net)
        torchs.update_parameters(net)
        for name, value in torchs.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[name], value, msg=f"step {step}: {name}")
