"""Real datasets: where they live under a data directory, how they are prepared from their downloads (once, under a
file lock), verified and loaded in their published formats.

    prepared = ensure(DATASETS["imagenet"], data_dir)     # DatasetMissing says what to download and where
    train = ImageFolder(prepared.root / "train", TrainTransform(224))
"""

from .coco import COCO2017, CocoDetection
from .criteo import CRITEO_KAGGLE, CRITEO_TERABYTE, CriteoClicks
from .ensure import ensure
from .imagenet import IMAGENET
from .images import ImageFolder
from .librispeech import LIBRISPEECH, LibriSpeech
from .ljspeech import LJSPEECH, LJSpeech
from .movielens import ML20M, MovieLens
from .spec import DatasetError, DatasetMissing, DatasetSpec, Download, Prepared
from .transforms import EvalTransform, TrainTransform
from .wmt16 import WMT16, ParallelText

#: every dataset a workload may train on, by name
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (IMAGENET, COCO2017, WMT16, ML20M, CRITEO_KAGGLE, CRITEO_TERABYTE, LIBRISPEECH, LJSPEECH)
}

__all__ = [
    "DATASETS",
    "CocoDetection",
    "CriteoClicks",
    "DatasetError",
    "DatasetMissing",
    "DatasetSpec",
    "Download",
    "EvalTransform",
    "ImageFolder",
    "LJSpeech",
    "LibriSpeech",
    "MovieLens",
    "ParallelText",
    "Prepared",
    "TrainTransform",
    "ensure",
]
