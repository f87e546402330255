"""Quality metrics in Inception-v3 features read from a local weights file (callbacks.quality.feature=inception),
for datasets without a trained feature network and nodes without internet."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.helpers import cpu_trainer, small_gan

def _write_inception_weights(path: Path, seed: int) -> Path:
    """torch-fidelity's Inception-v3 (the network torchmetrics' FID loads) with random weights, saved as its loader
    expects: a torch.save'd state_dict. Conv weights get He initialisation so the 2048 pool features stay O(1)."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fidelity

    torch.manual_seed(seed)
    with mock.patch.object(fidelity, "load_state_dict_from_url", return_value=None), \
            mock.patch.object(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda *args, **kwargs: None):
        net = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])  # no download, nothing loaded
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    pytest.importorskip("torch_fidelity", reason="feature=inception needs the [inception] extra (torch-fidelity)")
    folder = tmp_path_factory.mktemp("inception")
    return [_write_inception_weights(folder / f"weights-{seed}.pth", seed) for seed in (0, 1)]


def test_inception_features_come_from_the_weights_file_and_feed_every_metric(inception_weights):
    from gan.metrics.features import inception_extractor
    from gan.metrics.quality import compute_quality

    generator = torch.Generator().manual_seed(0)
    real, fake = torch.rand(6, 1, 28, 28, generator=generator), torch.rand(6, 1, 28, 28, generator=generator) ** 3
    results = []
    for path in inception_weights:
        extractor = inception_extractor(path)
        stored = torch.load(path, weights_only=True)
        loaded = extractor.inception.state_dict()
        assert all(torch.equal(loaded[key], value) for key, value in stored.items())  # the file's weights, all of them
        assert extractor.info["path"] == str(path) and extractor.num_features == 2048
        results.append(compute_quality(real, fake, extractor, batch_size=6, k=2, kid_subsets=3, kid_subset_size=4))
    for result in results:
        assert all(math.isfinite(v) for v in (result.fid, result.kid, result.kid_std, result.precision, result.recall))
        assert result.fid > 0 and result.inception_score is None and result.classes_covered is None
    assert results[0].fid != pytest.approx(results[1].fid, rel=1e-3)  # two files, two feature spaces


def test_inception_weights_setting_reaches_the_callback(tmp_path):
    from gan.callbacks.quality import SampleQuality
    from gan.utils.instantiate import instantiate_callbacks
    from tests.helpers import compose_train

    weights = tmp_path / "weights.pth"
    cfg = compose_train(["callbacks=[default,quality]", "callbacks.quality.feature=inception", f"paths.output_dir={tmp_path}",
                         f"callbacks.quality.inception_weights={weights}"])  # fmt: skip
    composed = next(c for c in instantiate_callbacks(cfg.callbacks) if isinstance(c, SampleQuality))
    assert composed.inception_weights == str(weights) and composed.feature == "inception"


@pytest.mark.slow  # Inception-v3 at 299x299 on the CPU, built twice
def test_callback_with_feature_inception_logs_fid_kid_pr_through_lightning(inception_weights, tiny_mnist_root):
    from gan.callbacks.quality import SampleQuality
    from gan.data import MNISTDataModule

    callback = SampleQuality(feature="inception", inception_weights=str(inception_weights[0]), test_samples=5,
                             test_points=5, k=2, kid_subsets=3, kid_subset_size=4, feature_batch_size=5)  # fmt: skip
    data = MNISTDataModule(root=str(tiny_mnist_root), verify=False, download=False, val_size=200, batch_size=50)
    trainer = cpu_trainer(callbacks=[callback], limit_test_batches=1)
    trainer.test(small_gan(shape=(1, 28, 28)), datamodule=data, verbose=False)
    logged = {key for key in trainer.callback_metrics if key.startswith("test/")}
    assert {"test/fid", "test/kid", "test/kid_std", "test/precision", "test/recall"} <= logged
    assert "test/inception_score" not in logged and callback.last_result.n_real == 5
    assert float(trainer.callback_metrics["test/fid"]) == pytest.approx(callback.last_result.fid)
    assert callback.extractor.info["path"] == str(inception_weights[0])


def test_inception_without_its_file_its_package_or_a_dataset_network_fails_in_one_line(tmp_path, monkeypatch):
    import sys

    from gan.metrics.features import FeatureNetworkUnavailable, MissingFeatureNetwork, dataset_key, inception_extractor

    pytest.importorskip("torch_fidelity")
    with pytest.raises(FeatureNetworkUnavailable) as missing:
        inception_extractor(tmp_path / "absent.pth")
    assert "callbacks.quality.inception_weights=" in str(missing.value) and "weights-inception-2015-12-05" in str(missing.value)
    (tmp_path / "garbage.pth").write_text("not a state dict")
    with pytest.raises(FeatureNetworkUnavailable, match="unreadable") as unreadable:
        inception_extractor(tmp_path / "garbage.pth")
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # as if the package were not installed
    with pytest.raises(FeatureNetworkUnavailable, match=r"gan-lightning\[inception\]") as no_package:
        inception_extractor(tmp_path / "absent.pth")
    with pytest.raises(MissingFeatureNetwork) as no_network:
        dataset_key("my faces")
    assert "callbacks.quality.feature=inception" in str(no_network.value)
    for error in (missing, unreadable, no_package, no_network):
        assert "\n" not in str(error.value)


# --- on the real data (slow: a few CPU minutes) ------------------------------------------------------------------
