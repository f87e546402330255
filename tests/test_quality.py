"""Feature-space sample-quality metrics: the feature network, the metrics' sanity, the callback, the CLIs."""

from __future__ import annotations

import json
import math

import os
from pathlib import Path

import pytest
import torch
from lightning import Callback

from tests.helpers import SHARED_DATA, cpu_trainer, run_cli, small_gan, tiny_data_overrides

REPO = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}  # for SaveQualityPerRank

QUICK_QUALITY = [  # small enough for the tiny dataset and a few seconds of CPU
    "callbacks.quality.every_n_epochs=1", "callbacks.quality.val_samples=200", "callbacks.quality.val_points=200",
    "callbacks.quality.test_samples=200", "callbacks.quality.kid_subsets=10", "callbacks.quality.kid_subset_size=100",
]  # fmt: skip


def _mnist_split(root, train: bool, n: int | None = None):
    from torchvision import datasets

    ds = datasets.MNIST(str(root), train=train)
    return ds.data[:n].unsqueeze(1).float() / 255, ds.targets[:n]


def _random_extractor(shape=(1, 28, 28), seed: int = 0):
    from gan.metrics.features import FeatureClassifier, FeatureExtractor

    torch.manual_seed(seed)
    return FeatureExtractor(FeatureClassifier(shape))


def _summary(stdout: str) -> dict:
    """gan-train-features prints its summary as one JSON line (log lines around it)."""
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


@pytest.fixture(scope="module")
def feature_cache(tiny_mnist_root, tmp_path_factory):
    """gan-train-features' work (in process: the CLI itself is run by the slow test) on the tiny dataset."""
    from gan.train_features import train_feature_network
    from tests.helpers import compose_train

    folder = tmp_path_factory.mktemp("features")
    cfg = compose_train([*tiny_data_overrides(tiny_mnist_root), f"paths.cache_dir={folder}", "features.epochs=3",
                         "features.batch_size=32", "extras.print_config=false"], config_name="train_features")  # fmt: skip
    threads = torch.get_num_threads()
    try:
        summary = train_feature_network(cfg)
    finally:
        torch.set_num_threads(threads)
    return folder, summary


def test_configs_compose_the_quality_callback_for_training_eval_and_the_feature_command(tmp_path):
    from gan.callbacks.quality import SampleQuality
    from gan.utils.instantiate import instantiate_callbacks
    from tests.helpers import compose_train

    train = compose_train(["callbacks=[default,quality]", f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}"])
    assert "parzen" in train.callbacks and train.callbacks.quality.if_missing == "error"
    quality = [c for c in instantiate_callbacks(train.callbacks) if isinstance(c, SampleQuality)]
    assert len(quality) == 1 and quality[0].cache_dir == str(tmp_path)
    evaluation = compose_train(["ckpt_path=x.ckpt", f"paths.output_dir={tmp_path}"], config_name="eval")
    assert set(evaluation.callbacks) == {"parzen", "quality"} and evaluation.callbacks.quality.if_missing == "skip"
    features = compose_train(["data=fashion_mnist", f"paths.cache_dir={tmp_path}"], config_name="train_features")
    assert features.data._target_.endswith("FashionMNISTDataModule") and features.features.feature_dim == 128


# --- the feature network -------------------------------------------------------------------------------------
def test_gan_train_features_caches_a_classifier_the_metrics_load(feature_cache):
    from gan.metrics.features import cache_path, load_feature_extractor

    cache_dir, summary = feature_cache
    assert summary["path"] == str(cache_path(cache_dir, "mnist")) and summary["n_train"] == 400
    assert summary["test_accuracy"] >= 0.9, summary  # blobs whose position is the class
    extractor = load_feature_extractor(cache_dir, "mnist", shape=(1, 28, 28))
    assert extractor.num_features == 128 and extractor.num_classes == 10
    assert extractor.info["test_accuracy"] == summary["test_accuracy"]
    assert not extractor.train().training and not any(p.requires_grad for p in extractor.parameters())
    images = torch.rand(5, 1, 28, 28)
    as_bytes = (images * 255).round().to(torch.uint8)
    torch.testing.assert_close(extractor(as_bytes), extractor(as_bytes.float() / 255))
    assert extractor(images).shape == (5, 128)


def test_feature_network_takes_cifar10_shaped_images():
    extractor = _random_extractor(shape=(3, 32, 32))
    features, logits = extractor.features_and_logits(torch.rand(7, 3, 32, 32), batch_size=4)
    assert features.shape == (7, 128) and logits.shape == (7, 10)


def test_feature_extractor_is_a_torchmetrics_feature_module_and_matches_the_precomputed_path():
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    from gan.metrics.quality import frechet_distance, kernel_distance

    extractor = _random_extractor()
    real, fake = torch.rand(300, 1, 28, 28), torch.rand(300, 1, 28, 28) ** 2
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    kid = KernelInceptionDistance(feature=extractor, normalize=True, subsets=5, subset_size=100)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    torch.manual_seed(7)
    kid_mean, kid_std = kid.compute()
    real_f, fake_f = extractor(real), extractor(fake)
    assert frechet_distance(real_f, fake_f) == pytest.approx(float(fid.compute()), rel=1e-5)
    mean, std, size = kernel_distance(real_f, fake_f, subsets=5, subset_size=100, seed=7)
    assert (mean, std, size) == (pytest.approx(float(kid_mean), rel=1e-5), pytest.approx(float(kid_std), rel=1e-5), 100)


def test_missing_or_mismatched_cache_and_offline_inception_fail_with_one_line_naming_the_fix(tmp_path, feature_cache):
    from gan.metrics.features import FeatureNetworkUnavailable, MissingFeatureNetwork, dataset_key, load_feature_extractor

    with pytest.raises(MissingFeatureNetwork) as missing:
        load_feature_extractor(tmp_path, "fashion_mnist")
    assert "gan-train-features data=fashion_mnist" in str(missing.value) and "\n" not in str(missing.value)
    with pytest.raises(MissingFeatureNetwork, match="shape"):
        load_feature_extractor(feature_cache[0], "mnist", shape=(3, 32, 32))
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "mnist.pt").write_text("not a checkpoint")
    with pytest.raises(MissingFeatureNetwork, match="unreadable"):
        load_feature_extractor(tmp_path, "mnist")
    assert dataset_key("Fashion-MNIST") == "fashion_mnist" and dataset_key("CIFAR-10") == "cifar10"
    with pytest.raises(MissingFeatureNetwork, match="TFD"):
        dataset_key("TFD")
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        from gan.metrics.features import inception_extractor

        with pytest.raises(FeatureNetworkUnavailable) as offline:
            inception_extractor()
        assert "feature=trained" in str(offline.value) and "\n" not in str(offline.value)


# --- the metrics ---------------------------------------------------------------------------------------------------
def _real_sets(source, tiny_root):
    if source == "tiny":
        return _mnist_split(tiny_root, train=False)[0], _mnist_split(tiny_root, train=True)[0][:400]
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    return _mnist_split(SHARED_DATA, train=False, n=1000)[0], _mnist_split(SHARED_DATA, train=True, n=1000)[0]


@pytest.mark.parametrize("source", ["tiny", "mnist"])
def test_fid_is_near_zero_between_real_splits_and_grows_with_noise(source, tiny_mnist_root):
    from gan.metrics.quality import frechet_distance

    test, train = _real_sets(source, tiny_mnist_root)
    extractor = _random_extractor()  # a fixed random conv net: features need no training for these properties
    test_f = extractor(test)
    real_vs_real = frechet_distance(test_f, extractor(train))
    real_vs_uniform = frechet_distance(test_f, extractor(torch.rand_like(train)))
    assert real_vs_real < 0.05 * real_vs_uniform, (real_vs_real, real_vs_uniform)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(train.shape, generator=g)
    fids = [frechet_distance(test_f, extractor((train + sigma * noise).clamp(0, 1))) for sigma in (0, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_precision_recall_of_identical_disjoint_and_one_class_sets(feature_cache, tiny_mnist_root):
    from gan.metrics.quality import classes_covered, inception_score, knn_radii, precision_recall, quality_from_features

    torch.testing.assert_close(knn_radii(torch.tensor([[0.0], [1.0], [3.0], [6.0]]), k=1), torch.tensor([1.0, 1.0, 2.0, 3.0]))
    points = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert precision_recall(points, points.clone()) == (1.0, 1.0)
    assert precision_recall(points, points + 100) == (0.0, 0.0)

    from gan.metrics.features import load_feature_extractor

    extractor = load_feature_extractor(feature_cache[0], "mnist")
    test, _ = _mnist_split(tiny_mnist_root, train=False)
    train, labels = _mnist_split(tiny_mnist_root, train=True)
    train, labels = train[:400], labels[:400]
    real, real_logits = extractor.features_and_logits(test)
    fake, fake_logits = extractor.features_and_logits(train)
    every_class = quality_from_features(real, fake, real_logits, fake_logits, kid_subset_size=100)
    fake, fake_logits = extractor.features_and_logits(train[labels == 3])
    one_class = quality_from_features(real, fake, real_logits, fake_logits, kid_subset_size=30)
    assert every_class.recall > 0.8 and one_class.recall < 0.3, (every_class, one_class)
    assert every_class.precision > 0.8 and one_class.precision > 0.8
    assert one_class.fid > 5 * every_class.fid and one_class.kid > every_class.kid
    assert every_class.classes_covered == 10 and one_class.classes_covered == 1
    assert every_class.inception_score > 7 and one_class.inception_score < 1.5
    assert every_class.real_classes_covered == 10 and every_class.real_inception_score > 7
    assert math.isclose(inception_score(real_logits), every_class.real_inception_score)
    assert classes_covered(real_logits) == 10


def test_inception_score_and_classes_covered_on_known_predictions():
    from gan.metrics.quality import classes_covered, inception_score

    balanced = torch.eye(10).repeat(10, 1) * 50  # 100 confident predictions, 10 per class
    assert inception_score(balanced) == pytest.approx(10, rel=1e-6)
    assert inception_score(torch.zeros(100, 10)) == pytest.approx(1.0)  # uncertain
    single = torch.zeros(100, 10)
    single[:, 4] = 50
    assert inception_score(single) == pytest.approx(1.0) and classes_covered(single) == 1
    mostly = single.clone()
    mostly[:5, 4], mostly[:5, 7] = 0, 50  # 95 of class 4, 5 of class 7
    assert classes_covered(mostly, min_fraction=0.01) == 2 and classes_covered(mostly, min_fraction=0.1) == 1
    assert classes_covered(balanced) == 10


# --- the callback ------------------------------------------------------------------------------------------------
def test_callback_logs_every_key_at_validation_and_test(feature_cache, tiny_mnist_root):
    from gan.callbacks.quality import SampleQuality
    from gan.data import MNISTDataModule

    keys = ("fid", "kid", "kid_std", "precision", "recall", "inception_score", "classes_covered")
    callback = SampleQuality(cache_dir=str(feature_cache[0]), every_n_epochs=1, val_samples=150, val_points=150,
                             test_samples=120, kid_subsets=5, kid_subset_size=50)  # fmt: skip
    data = MNISTDataModule(root=str(tiny_mnist_root), verify=False, download=False, val_size=200, batch_size=50)
    trainer = cpu_trainer(callbacks=[callback], limit_train_batches=2, limit_val_batches=1)
    model = small_gan(shape=(1, 28, 28))
    trainer.fit(model, datamodule=data)
    for key in keys:
        assert math.isfinite(float(trainer.callback_metrics[f"val/{key}"])), key
    trainer.test(model, datamodule=data, verbose=False)
    result = callback.last_result
    assert result.n_samples == 120 and result.n_real == 200 and result.kid_subset_size == 50
    assert {f"test/{key}" for key in keys} <= set(trainer.callback_metrics)
    assert float(trainer.callback_metrics["test/fid"]) == pytest.approx(result.fid)
    assert 0 <= result.precision <= 1 and 0 <= result.recall <= 1 and 1 <= result.inception_score <= 10


def test_callback_missing_cache_errors_at_setup_or_is_skipped(tmp_path, tiny_mnist_root):
    from gan.callbacks.quality import SampleQuality
    from gan.data import MNISTDataModule
    from gan.metrics.features import MissingFeatureNetwork

    data = MNISTDataModule(root=str(tiny_mnist_root), verify=False, download=False, val_size=200, batch_size=50)
    with pytest.raises(MissingFeatureNetwork, match="gan-train-features data=mnist"):
        cpu_trainer(callbacks=[SampleQuality(cache_dir=str(tmp_path))], limit_train_batches=1).fit(
            small_gan(shape=(1, 28, 28)), datamodule=data
        )
    skipping = SampleQuality(cache_dir=str(tmp_path), if_missing="skip", every_n_epochs=1)
    trainer = cpu_trainer(callbacks=[skipping], limit_train_batches=1, limit_val_batches=1)
    trainer.fit(small_gan(shape=(1, 28, 28)), datamodule=data)
    assert not any(key.startswith("val/fid") for key in trainer.callback_metrics)
    assert "gan-train-features data=mnist" in skipping.report()["skipped"]


class SaveQualityPerRank(Callback):
    """Added to a DDP run through Hydra: each rank writes the quality results it computed and logged."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def on_test_end(self, trainer, pl_module) -> None:
        from gan.callbacks.quality import SampleQuality

        quality = next(c for c in trainer.callbacks if isinstance(c, SampleQuality))
        torch.save({"val": quality.last_val_result.as_dict(), "test": quality.last_result.as_dict(),
                    "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}},
                   f"{self.dirpath}/quality_rank{trainer.global_rank}.pt")  # fmt: skip


def test_gan_train_ddp_with_quality_agrees_on_every_rank_then_gan_eval_reports_it(feature_cache, tiny_mnist_root, tmp_path):
    cache_dir = feature_cache[0]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = run_cli("gan-train", "debug=fast", "trainer=ddp_cpu", "callbacks=[default,quality]", f"hydra.run.dir={run_dir}",
                     f"paths.cache_dir={cache_dir}", *QUICK_QUALITY, *tiny_data_overrides(tiny_mnist_root),
                     "+callbacks.ranks._target_=tests.test_quality.SaveQualityPerRank", f"+callbacks.ranks.dirpath={run_dir}",
                     env=ENV, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val/fid", "test/fid", "test/kid", "test/precision", "test/recall", "test/classes_covered"):
        assert math.isfinite(metrics[key]), key
    ranks = [torch.load(run_dir / f"quality_rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["val"] == ranks[1]["val"] and ranks[0]["test"] == ranks[1]["test"]
    assert ranks[0]["test"]["n_samples"] == 200 and ranks[0]["test"]["n_real"] == 200  # all of them, not a rank's share
    assert ranks[0]["metrics"]["test/fid"] == pytest.approx(ranks[0]["test"]["fid"]) == metrics["test/fid"]

    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    common = [f"ckpt_path={checkpoint}", f"data.root={tiny_mnist_root}", "callbacks.parzen.test_samples=200"]
    evaluated = run_cli("gan-eval", *common, f"paths.cache_dir={cache_dir}", "callbacks.quality.test_samples=200",
                        f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads(checkpoint.with_suffix(".eval.json").read_text())
    assert "parzen" in report and report["quality"]["n_samples"] == 200 and report["quality"]["n_real"] == 200
    assert report["test/fid"] == pytest.approx(report["quality"]["fid"])

    no_cache = run_cli("gan-eval", *common, f"paths.cache_dir={tmp_path / 'empty'}", f"hydra.run.dir={tmp_path / 'eval2'}",
                       cwd=tmp_path)  # fmt: skip
    assert no_cache.returncode == 0, no_cache.stderr[-3000:]
    assert "gan-train-features data=mnist" in no_cache.stdout + no_cache.stderr  # the warning says how to get them
    report = json.loads(checkpoint.with_suffix(".eval.json").read_text())
    assert "parzen" in report and "test/fid" not in report
    assert "gan-train-features data=mnist" in report["quality"]["skipped"]


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "folder", "target"), [("mnist", "MNIST", 0.99), ("fashion_mnist", "FashionMNIST", 0.90)])
def test_feature_network_reaches_its_target_accuracy_on_real_data(dataset, folder, target, tmp_path):
    if not (SHARED_DATA / folder / "raw").is_dir():
        pytest.skip(f"{folder} not found under {SHARED_DATA}")
    result = run_cli("gan-train-features", f"data={dataset}", f"data.root={SHARED_DATA}", f"paths.cache_dir={tmp_path}",
                     f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, timeout=1800)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(result.stdout)
    assert summary["test_accuracy"] >= target, summary
    assert (tmp_path / "features" / f"{dataset}.pt").is_file()
