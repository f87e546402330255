"""The feature space of the sample-quality metrics: a small CNN classifier trained on the dataset itself.

FID and friends are usually computed in the pool features of an ImageNet Inception-v3, which needs its
weights (a download, or a local file: `InceptionFeatures`, `feature=inception`) and says little about 28x28
digits; numbers in the two spaces are not comparable. Here each dataset gets its own classifier,
trained by `gan-train-features data=<dataset>` and cached as `<paths.cache_dir>/features/<dataset>.pt`;
its penultimate layer (128 ReLU units by default) is the feature space, its softmax the p(y|x) of the
Inception-style score.

`FeatureExtractor` wraps a classifier for torchmetrics: images in [0, 1] (float) or [0, 255] (uint8), shape
(N, C, H, W), in; (N, num_features) features out. It has `num_features`, so torchmetrics needs no dummy
forward, and it never leaves eval mode:

    FrechetInceptionDistance(feature=load_feature_extractor(cache_dir, "mnist"), normalize=True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from gan.errors import DataError

FORMAT_VERSION = 1
# Datamodule `name` -> the cache file's stem, which is also the option of the `data` config group.
DATASET_KEYS = {"MNIST": "mnist", "Fashion-MNIST": "fashion_mnist", "CIFAR-10": "cifar10"}


class MissingFeatureNetwork(DataError):
    """No cached feature network for this dataset (or one that does not fit it)."""


class FeatureNetworkUnavailable(DataError):
    """The requested feature network cannot be built here (e.g. Inception-v3 offline)."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class FeatureClassifier(nn.Module):
    """Conv blocks (3x3 conv, batch norm, ReLU, 2x2 max pool), a `feature_dim` ReLU layer (the features),
    dropout and a linear head. Inputs are [0, 1] images; `mean`/`std` (the training pixels') standardise them."""

    def __init__(
        self,
        shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        feature_dim: int = 128,
        dropout: float = 0.3,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__()
        self.shape, self.num_classes = tuple(int(s) for s in shape), int(num_classes)
        self.channels = tuple(int(c) for c in channels)
        self.feature_dim, self.dropout = int(feature_dim), float(dropout)
        c, h, w = self.shape
        layers: list[nn.Module] = []
        for width in self.channels:
            layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, self.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.feature_dim, self.num_classes))
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def arch(self) -> dict:
        """The constructor arguments, to rebuild the network from a cache file."""
        return {"shape": list(self.shape), "num_classes": self.num_classes, "channels": list(self.channels),
                "feature_dim": self.feature_dim, "dropout": self.dropout}  # fmt: skip

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body((images - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class FeatureExtractor(nn.Module):
    """A trained FeatureClassifier as a frozen feature map for FID/KID (torchmetrics' `feature=`) and friends."""

    def __init__(self, classifier: FeatureClassifier, info: dict | None = None) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.feature_dim  # read by torchmetrics instead of a dummy forward
        self.num_classes = classifier.num_classes
        self.shape = classifier.shape
        self.info = dict(info or {})
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)  # batch norm and dropout stay in inference mode, whatever a caller asks

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != self.shape:
            raise DataError(
                f"the feature network takes images of shape {list(self.shape)}, got {list(images.shape[1:])}; "
                "train one for this dataset with gan-train-features data=..."
            )
        images = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        return images.to(self.classifier.mean.device)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] (or uint8 in [0, 255]) -> (N, num_features) features."""
        return self.classifier.features(self._prepare(images))

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and class logits of any number of images, in batches (one pass through the body)."""
        features, logits = [], []
        for start in range(0, len(images), batch_size):
            f = self.classifier.features(self._prepare(images[start : start + batch_size]))
            features.append(f)
            logits.append(self.classifier.head(f))
        if not features:
            empty = torch.empty(0, device=self.classifier.mean.device)
            return empty.view(0, self.num_features), empty.view(0, self.num_classes)
        return torch.cat(features), torch.cat(logits)


class InceptionFeatures(nn.Module):
    """torchmetrics' Inception-v3 (2048 pool features) behind the same interface: [0, 1] images, grey ones
    repeated to RGB. No classes: the Inception-style score and class coverage are not computed with it."""

    num_classes = None

    def __init__(self, inception: nn.Module, info: dict | None = None) -> None:
        super().__init__()
        self.inception, self.num_features = inception, 2048
        self.info = {"feature": "inception", **(info or {})}

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        return self.inception(images)

    def features_and_logits(self, images: torch.Tensor, batch_size: int = 100) -> tuple[torch.Tensor, None]:
        return torch.cat([self(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]), None


# torch-fidelity's Inception-v3 weights, the FID network's (converted from TensorFlow's 2015-12-05 graph); the
# file torchmetrics downloads on first use. `callbacks.quality.inception_weights` points at a local copy.
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_SETTING = "callbacks.quality.inception_weights"
GET_WEIGHTS = f"download {INCEPTION_WEIGHTS_URL} on a machine with internet and set {INCEPTION_SETTING}=/path/to/it"


def inception_extractor(weights: str | Path | None = None) -> InceptionFeatures:
    """torchmetrics' standard FID network (`feature=2048`) with the weights in the file `weights` (torch-fidelity's
    format: a state_dict saved by torch.save), or downloaded on first use when `weights` is None; any failure is
    one FeatureNetworkUnavailable line naming the fix. The file is unpickled as torch-fidelity does
    (weights_only=False): use only files you trust."""
    try:
        import torch_fidelity  # noqa: F401  (torchmetrics imports it only when present)
    except ImportError:
        raise FeatureNetworkUnavailable(
            "feature=inception needs the torch-fidelity package. Fix: pip install 'gan-lightning[inception]' "
            "(or torch-fidelity), or use feature=trained (train it with gan-train-features data=...)"
        ) from None
    path = str(Path(weights).expanduser()) if weights is not None else None
    if path is not None and not Path(path).is_file():
        raise FeatureNetworkUnavailable(f"no Inception-v3 weights file at {path}. Fix: {GET_WEIGHTS}")
    from torchmetrics.image.fid import FrechetInceptionDistance

    try:
        metric = FrechetInceptionDistance(feature=2048, normalize=True, sync_on_compute=False,
                                          feature_extractor_weights_path=path)  # fmt: skip
    except Exception as error:  # the download failing offline, a file of another format, ...
        where = f"the weights file {path} is unreadable" if path else "the weights' download failed"
        raise FeatureNetworkUnavailable(f"feature=inception: {where} ({_first_line(error)}). Fix: {GET_WEIGHTS}") from None
    return InceptionFeatures(metric.inception, {"path": path or INCEPTION_WEIGHTS_URL})


# --- the cache ---------------------------------------------------------------------------------------------------
def dataset_key(datamodule_or_name) -> str:
    """The cache name of a dataset (also its `data=` option): mnist, fashion_mnist, cifar10."""
    own_name = getattr(datamodule_or_name, "feature_cache_name", None)  # a datamodule that names its own (a folder)
    if own_name is not None:
        return own_name
    name = datamodule_or_name if isinstance(datamodule_or_name, str) else getattr(datamodule_or_name, "name", "")
    if name in DATASET_KEYS.values():
        return name
    if name not in DATASET_KEYS:
        raise MissingFeatureNetwork(
            f"no trained feature network is defined for the dataset {name!r} (gan-train-features supports "
            f"{', '.join(DATASET_KEYS)} and image_folder with class subfolders). Fix: callbacks.quality.feature=inception {INCEPTION_SETTING}=/path/to/"
            "weights.pth (any images), or remove the quality callback for this dataset"
        )
    return DATASET_KEYS[name]


def feature_key(datamodule) -> str:
    """The cache name of the feature network for `datamodule`'s images as the quality metrics feed them: the
    dataset, plus `_minmax` where the scaling is not invertible (gcn: images reach the network min-max stretched
    by `to_unit_range`, so its network is trained on them that way, not on raw pixels)."""
    from gan.data.scaling import is_invertible

    key = dataset_key(datamodule)
    return key if is_invertible(getattr(datamodule, "scaling", "unit")) else f"{key}_minmax"


def training_command(datamodule) -> str:
    if (command := getattr(datamodule, "feature_training_command", None)) is not None:
        return command
    return f"gan-train-features data={dataset_key(datamodule)} data.scaling={getattr(datamodule, 'scaling', 'unit')}"


def cache_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir).expanduser() / "features" / f"{key}.pt"


def save_feature_network(path: str | Path, classifier: FeatureClassifier, **info) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT_VERSION, "arch": classifier.arch(), "info": info,
               "state_dict": {k: v.detach().cpu() for k, v in classifier.state_dict().items()}}  # fmt: skip
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_feature_extractor(cache_dir: str | Path, key: str, shape: Sequence[int] | None = None,
                           train_command: str | None = None) -> FeatureExtractor:  # fmt: skip
    """The cached feature network `key`; a one-line MissingFeatureNetwork naming the command to run."""
    path = cache_path(cache_dir, key)
    command = f"run {train_command or f'gan-train-features data={key}'} (with this run's data.root and paths.cache_dir)"
    if not path.is_file():
        raise MissingFeatureNetwork(f"no feature network for {key} at {path}. Fix: {command}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        classifier = FeatureClassifier(**payload["arch"])
        classifier.load_state_dict(payload["state_dict"])
    except Exception as error:
        reason = _first_line(error)
        raise MissingFeatureNetwork(f"the feature network {path} is unreadable ({reason}). Fix: {command}") from None
    if shape is not None and tuple(shape) != classifier.shape:
        raise MissingFeatureNetwork(
            f"the feature network {path} takes images of shape {list(classifier.shape)}, the data has "
            f"{list(shape)}. Fix: {command}"
        )
    return FeatureExtractor(classifier, info={**payload.get("info", {}), "path": str(path)})


def build_extractor(feature: str, cache_dir: str | Path, datamodule, inception_weights: str | Path | None = None
                    ) -> nn.Module:  # fmt: skip
    """`feature=trained`: the dataset's cached classifier; `feature=inception`: torchmetrics' Inception-v3, its
    weights read from `inception_weights` (a local file) or downloaded when that is None."""
    if feature == "inception":
        return inception_extractor(inception_weights)
    if feature != "trained":
        from gan.errors import ConfigError

        raise ConfigError(f"callbacks.quality.feature={feature!r} is invalid: must be trained or inception")
    return load_feature_extractor(cache_dir, feature_key(datamodule), getattr(datamodule, "shape", None),
                                  training_command(datamodule))  # fmt: skip


def accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    was_training = classifier.training
    classifier.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = classifier(images[start : start + batch_size])
            correct += int((logits.argmax(1) == labels[start : start + batch_size].to(logits.device)).sum())
    classifier.train(was_training)
    return correct / max(len(images), 1)


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    mean = float(images.mean())
    return mean, max(math.sqrt(float(images.var())), 1e-6)
