"""splitds_dask: lazy, Dask-backed reading and writing of split datasets.

A split dataset is one N-d array stored as a folder of numbered HDF5 block files plus a
``stack_metadata.json`` giving the full shape and the block shape. ``import splitds_dask as
split_dataset`` runs code written for the original ``split_dataset`` package.
"""

from __future__ import annotations

from ._blocks import Blocks
from ._cluster import connect, distributed_config, local_cluster, worker_environment
from ._compat import EmptySplitDataset, save_to_split_dataset
from ._dataset import IncompleteDatasetWarning, SplitDataset
from ._errors import (
    BlockError,
    BlockIndexError,
    MetadataError,
    NotASplitDatasetError,
    SplitDatasetError,
)
from ._physical import PhysicalMetadata, physical_metadata_kwargs
from ._stream import SplitDatasetWriter
from ._verify import Problem, verify
from ._writer import to_split_dataset

__version__ = "0.1.0"

__all__ = [
    "BlockError",
    "BlockIndexError",
    "Blocks",
    "EmptySplitDataset",
    "IncompleteDatasetWarning",
    "MetadataError",
    "NotASplitDatasetError",
    "PhysicalMetadata",
    "Problem",
    "SplitDataset",
    "SplitDatasetError",
    "SplitDatasetWriter",
    "__version__",
    "physical_metadata_kwargs",
    "connect",
    "distributed_config",
    "local_cluster",
    "save_to_split_dataset",
    "to_split_dataset",
    "worker_environment",
    "verify",
]


for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        _obj.__module__ = __name__
del _name, _obj
