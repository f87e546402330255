"""LightningDataModules for the paper's datasets and a user's image folder, each configured by a file in conf/data/."""

from gan.data.base import InMemoryImageDataModule
from gan.data.cifar10 import CIFAR10DataModule
from gan.data.image_folder import ImageFolderDataModule
from gan.data.loader import TensorBatchLoader
from gan.data.mnist import FashionMNISTDataModule, MNISTDataModule
from gan.data.tfd import TFDDataModule
from gan.data.toy import Toy1DDataModule

__all__ = [
    "CIFAR10DataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InMemoryImageDataModule",
    "MNISTDataModule",
    "TFDDataModule",
    "TensorBatchLoader",
    "Toy1DDataModule",
]
