"""The reference rows of the results table: real images scored as if they were generator samples.

    python scripts/real_data_reference.py --data mnist --data-root /path/to/data [--num-samples 10000]

"samples" = the first N training images; Parzen with the paper's protocol (sigma on the first 1,000
validation images, the whole test set) and the feature-space metrics against the test set (needs the
cached feature network: gan-train-features data=<data>). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os

from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from gan.metrics.features import feature_key, load_feature_extractor, training_command
from gan.metrics.parzen import parzen_protocol
from gan.metrics.quality import compute_quality


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", help="a conf/data option (mnist, fashion_mnist, ...)")
    parser.add_argument("--data-root", default=os.environ.get("GAN_DATA_ROOT", "data"))  # as paths.data_dir
    parser.add_argument("--num-samples", type=int, default=10000)
    args = parser.parse_args()
    with initialize_config_module(config_module="gan.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"data={args.data}", f"data.root={args.data_root}", "paths.output_dir=."])
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    samples = datamodule.to_unit_range(datamodule.images("train")[: args.num_samples])
    valid = datamodule.to_unit_range(datamodule.images("val")[:1000])
    test = datamodule.to_unit_range(datamodule.images("test"))
    parzen = parzen_protocol(samples.flatten(1), valid.flatten(1), test.flatten(1))
    extractor = load_feature_extractor(cfg.paths.cache_dir, feature_key(datamodule), datamodule.shape,
                                       training_command(datamodule))
    quality = compute_quality(test, samples, extractor)
    print(json.dumps({"data": args.data, "samples": f"train[0:{args.num_samples}]", "parzen": parzen.as_dict(),
                      "quality": quality.as_dict()}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
