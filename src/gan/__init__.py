"""Generative Adversarial Nets (Goodfellow et al., 2014) with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
