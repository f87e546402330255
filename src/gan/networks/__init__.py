"""Generators and discriminators, each instantiated by Hydra from conf/model/{generator,discriminator}."""

from gan.networks.conv import ConvTransposeGenerator, MaxoutConvDiscriminator
from gan.networks.dcgan import DCGANDiscriminator, DCGANGenerator
from gan.networks.layers import Maxout, MaxoutConv2d, apply_max_norm
from gan.networks.mlp import MaxoutDiscriminator, MLPGenerator, PyTorchGANDiscriminator, PyTorchGANGenerator

__all__ = [
    "ConvTransposeGenerator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPGenerator",
    "Maxout",
    "MaxoutConv2d",
    "MaxoutConvDiscriminator",
    "MaxoutDiscriminator",
    "PyTorchGANDiscriminator",
    "PyTorchGANGenerator",
    "apply_max_norm",
]
