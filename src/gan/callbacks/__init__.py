"""Evaluation, visualisation and safety, kept out of the model (each configured in conf/callbacks/)."""

from gan.callbacks.checkpoint import EpochCheckpoint, LastAndBestCheckpoint
from gan.callbacks.divergence import DivergenceGuard
from gan.callbacks.figures import PaperFigures, ToyDensityPlot
from gan.callbacks.parzen import ParzenLogLikelihood
from gan.callbacks.preemption import PreemptionCheckpoint
from gan.callbacks.progress import ThrottledRichProgressBar
from gan.callbacks.quality import SampleQuality
from gan.callbacks.run_config import StoreRunConfig
from gan.callbacks.samples import SampleGrid

__all__ = ["DivergenceGuard", "EpochCheckpoint", "LastAndBestCheckpoint", "PaperFigures", "ParzenLogLikelihood",
           "PreemptionCheckpoint", "SampleGrid", "SampleQuality", "StoreRunConfig", "ThrottledRichProgressBar",
           "ToyDensityPlot"]
