"""splitds_dask: lazy, Dask-backed reading and writing of split datasets.

A split dataset is one N-d array stored as a folder of numbered HDF5 block files plus a
``stack_metadata.json`` giving the full shape and the block shape. ``import splitds_dask as
split_dataset`` runs code written for the original ``split_dataset`` package.
"""

from __future__ import annotations

from splitds_dask._compat.blocks import Blocks
from splitds_dask._compat.writing import EmptySplitDataset, save_to_split_dataset
from splitds_dask._dataset import IncompleteDatasetWarning, SplitDataset
from splitds_dask._errors import (
    BlockError,
    BlockIndexError,
    FormatError,
    MetadataError,
    NotASplitDatasetError,
    NotReferenceableError,
    OutsideFolderError,
    SplitDatasetError,
    WriterLockedError,
)
from splitds_dask._format.physical import PhysicalMetadata, physical_metadata_kwargs
from splitds_dask._integrations.cluster import (
    connect,
    distributed_config,
    local_cluster,
    worker_environment,
)
from splitds_dask._integrations.kerchunk import kerchunk_references
from splitds_dask._verify import Problem, verify
from splitds_dask._write.array import to_split_dataset
from splitds_dask._write.stream import SplitDatasetWriter

__version__ = "0.1.0"

__all__ = [
    "BlockError",
    "BlockIndexError",
    "Blocks",
    "EmptySplitDataset",
    "FormatError",
    "IncompleteDatasetWarning",
    "MetadataError",
    "NotASplitDatasetError",
    "NotReferenceableError",
    "OutsideFolderError",
    "PhysicalMetadata",
    "Problem",
    "SplitDataset",
    "SplitDatasetError",
    "SplitDatasetWriter",
    "WriterLockedError",
    "__version__",
    "physical_metadata_kwargs",
    "connect",
    "distributed_config",
    "kerchunk_references",
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
