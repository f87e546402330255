"""gan-train-features: train and cache the feature network of the sample-quality metrics.

    gan-train-features data=mnist data.root=/path/to/data
    gan-train-features data=fashion_mnist data.root=/path/to/data features.epochs=10

A small CNN classifier (gan.metrics.features.FeatureClassifier) is trained with Adam on the same training
split the GAN sees (MNIST: train[0:50000]; labels read with torchvision from data.root), checked on the
validation and test splits, and saved with its accuracies as ${paths.cache_dir}/features/<dataset>.pt,
where the `quality` callback and gan-eval look for it.
"""

from __future__ import annotations

import json
import logging
import time

import hydra
from omegaconf import DictConfig

from gan.errors import ConfigError, DataError
from gan.utils.run import print_config, user_errors_reported

log = logging.getLogger("gan")
DEFAULT_EPOCHS = {"mnist": 4, "fashion_mnist": 5, "cifar10": 15}


def check_labelled(datamodule) -> None:
    if not hasattr(datamodule, "labelled_splits") and not (hasattr(datamodule, "_dataset") and hasattr(datamodule, "val_size")):
        raise DataError(f"{datamodule.name} has no class labels here; the feature network needs a labelled dataset. "
                        "Fix: gan-train-features data=mnist, fashion_mnist, cifar10, or data=image_folder "
                        "data.path=<a folder with one subfolder per class>")  # fmt: skip


def labelled_splits(datamodule, max_train: int | None = None) -> dict[str, tuple]:
    """{split: (images in [0, 1], labels)} with the datamodule's own split of the training file, the images as the
    quality metrics will feed them (`to_unit_range` of the scaled images: raw pixels unless the scaling is gcn)."""
    import torch

    from gan.data.scaling import is_invertible, scale, to_unit_range

    check_labelled(datamodule)
    if hasattr(datamodule, "labelled_splits"):  # an image folder: labels from its class subfolders
        return datamodule.labelled_splits(max_train)
    datamodule.prepare_data()
    images = datamodule.load_splits()  # [0, 1], before the networks' scaling; checks files and md5s
    train_labels = torch.as_tensor(datamodule._dataset(train=True).targets, dtype=torch.long)
    test_labels = torch.as_tensor(datamodule._dataset(train=False).targets, dtype=torch.long)
    cut = len(train_labels) - datamodule.val_size
    labels = {"train": train_labels[:cut], "val": train_labels[cut:], "test": test_labels}
    for split, x in images.items():
        if len(x) != len(labels[split]):
            raise DataError(f"{datamodule.name} {split}: {len(x)} images but {len(labels[split])} labels "
                            f"under {datamodule.root}")  # fmt: skip
    if not is_invertible(datamodule.scaling):
        images = {split: to_unit_range(scale(x, datamodule.scaling, datamodule.gcn_scale), datamodule.scaling)
                  for split, x in images.items()}  # fmt: skip
    return {split: (images[split], labels[split]) for split in ("train", "val", "test")}


def train_feature_network(cfg: DictConfig) -> dict:
    """Train, evaluate and cache; returns the summary that is also printed as JSON."""
    import torch

    from gan.config import validate_config
    from gan.metrics.features import (
        FeatureClassifier, accuracy, cache_path, dataset_key, feature_key, pixel_stats, save_feature_network,
    )  # fmt: skip

    from gan.utils.instantiate import build

    validate_config(cfg)  # the data keys: a missing data.path or a bad value is one line, before anything loads
    opts = cfg.features
    if cfg.get("extras", {}).get("print_config"):
        print_config(cfg)
    if opts.threads:
        torch.set_num_threads(int(opts.threads))
    torch.manual_seed(int(cfg.seed))
    datamodule = build(cfg.data, "data")
    check_labelled(datamodule)
    key = feature_key(datamodule)
    epochs = int(opts.epochs or DEFAULT_EPOCHS.get(dataset_key(datamodule), 5))
    if epochs < 1 or int(opts.batch_size) < 1 or not float(opts.lr) > 0:
        raise ConfigError("features.epochs, features.batch_size and features.lr must be > 0 (e.g. features.epochs=4)")
    max_train = opts.get("max_train_images")
    if max_train is not None and not (isinstance(max_train, int) and max_train >= 1):
        raise ConfigError(f"features.max_train_images={max_train!r} is invalid: must be null or an integer >= 1 "
                          "(e.g. features.max_train_images=50000)")  # fmt: skip
    splits = labelled_splits(datamodule, max_train)
    splits["train"] = tuple(part[:max_train] for part in splits["train"])  # every dataset, folders and files alike
    train_x, train_y = splits["train"]
    num_classes = int(max(int(y.max()) for _, y in splits.values())) + 1
    mean, std = pixel_stats(train_x)
    net = FeatureClassifier(datamodule.shape, num_classes, opts.channels, opts.feature_dim, opts.dropout, mean, std)
    optimizer = torch.optim.Adam(net.parameters(), lr=float(opts.lr), weight_decay=float(opts.weight_decay))
    steps_per_epoch = -(-len(train_x) // int(opts.batch_size))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / (epochs * steps_per_epoch))
    generator = torch.Generator().manual_seed(int(cfg.seed))
    started = time.time()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for start in range(0, len(train_x), int(opts.batch_size)):
            index = order[start : start + int(opts.batch_size)]
            loss = torch.nn.functional.cross_entropy(net(train_x[index]), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        val_acc = accuracy(net, *splits["val"])
        log.info("epoch %d/%d: train loss %.4f, val accuracy %.4f (%.0f s)", epoch + 1, epochs, total / len(train_x),
                 val_acc, time.time() - started)  # fmt: skip
    summary = {"dataset": key, "epochs": epochs, "seconds": round(time.time() - started, 1),
               "train_accuracy": accuracy(net, train_x[:10000], train_y[:10000]),  # (the first 10,000)
               "val_accuracy": val_acc, "test_accuracy": accuracy(net, *splits["test"]), "num_classes": num_classes,
               "n_train": len(train_x), "seed": int(cfg.seed)}  # fmt: skip
    if opts.min_test_accuracy is not None and summary["test_accuracy"] < float(opts.min_test_accuracy):
        raise DataError(f"the feature network reached test accuracy {summary['test_accuracy']:.4f} < "
                        f"features.min_test_accuracy={opts.min_test_accuracy}; nothing saved. Fix: train longer "
                        "(features.epochs=...) or lower the bar")  # fmt: skip
    out = opts.out or cache_path(cfg.paths.cache_dir, key)
    summary["path"] = str(save_feature_network(out, net, **summary))
    print(json.dumps(summary, sort_keys=True))
    log.info("saved %s (test accuracy %.4f)", summary["path"], summary["test_accuracy"])
    return summary


@hydra.main(version_base="1.3", config_path="pkg://gan.conf", config_name="train_features")
def main(cfg: DictConfig) -> None:
    with user_errors_reported():
        train_feature_network(cfg)


if __name__ == "__main__":
    main()
