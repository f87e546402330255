"""Generative Adversarial Nets (Goodfellow et al., 2014) with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"

from gan.utils.cluster import register_resolvers

register_resolvers()  # ${gan.gpus_per_node:...} in conf/hydra/launcher/slurm.yaml
