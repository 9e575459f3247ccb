"""The sizes of block files kept from the listing made at opening (splitds_dask._remote.sizes):
by dataset and metadata version, bounded, never for a name that is not the dataset's."""

from __future__ import annotations

import numpy as np

from splitds_dask._format.files import BlockNames
from splitds_dask._remote.location import FileVersion, StoredFile
from splitds_dask._remote.sizes import BlockSizeCache

V1 = FileVersion(100, 'ETag="1"')
V2 = FileVersion(100, 'ETag="2"')


def _listing(names: BlockNames, base: int = 1000) -> dict[str, StoredFile]:
    return {names[i]: StoredFile(base + i, None) for i in range(len(names))}


def test_sizes_are_found_by_name_under_their_metadata_version():
    cache = BlockSizeCache()
    names = BlockNames("", 0, 4, 12)
    cache.remember("s3://b/d", V1, names, _listing(names))
    assert cache.size("s3://b/d", V1, names, "0011.h5") == 1011
    assert cache.size("s3://b/d", V1, names.head(6), "0005.h5") == 1005  # the dataset's blocks
    assert cache.size("s3://b/d", V2, names, "0011.h5") is None  # committed again: unknown
    assert cache.size("s3://b/other", V1, names, "0011.h5") is None
    # Names that are not the dataset's: never another block's size.
    for name in ("011.h5", "11.h5", "0012.h5", "x0001.h5", "0001.h5.tmp", "stack_metadata.json"):
        assert cache.size("s3://b/d", V1, names, name) is None, name
    assert cache.size("s3://b/d", V1, names.head(6), "0006.h5") is None


def test_two_families_of_one_folder_keep_their_own_sizes():
    cache = BlockSizeCache()
    fish1, fish2 = BlockNames("fish1_", 0, 4, 3), BlockNames("fish2_", 1, 4, 3)
    cache.remember("s3://b/d", V1, fish1, _listing(fish1, 10))
    cache.remember("s3://b/d", V1, fish2, _listing(fish2, 20))
    assert cache.size("s3://b/d", V1, fish1, "fish1_0002.h5") == 12
    assert cache.size("s3://b/d", V1, fish2, "fish2_0003.h5") == 22


def test_a_file_the_listing_lacks_has_no_size():
    cache = BlockSizeCache()
    names = BlockNames("", 0, 4, 3)
    listing = _listing(names)
    del listing["0001.h5"]
    cache.remember("s3://b/d", V1, names, listing)
    assert cache.size("s3://b/d", V1, names, "0001.h5") is None
    assert cache.size("s3://b/d", V1, names, "0002.h5") == 1002


def test_sizes_are_bounded_in_blocks_over_all_datasets():
    cache = BlockSizeCache(max_blocks=250)
    names = BlockNames("", 0, 4, 100)
    for i in range(3):
        cache.remember(f"s3://b/d{i}", V1, names, _listing(names))
    assert cache.size("s3://b/d0", V1, names, "0000.h5") is None  # the oldest went
    assert cache.size("s3://b/d2", V1, names, "0099.h5") == 1099
    cache.remember("s3://b/big", V1, BlockNames("", 0, 4, 251), {})  # larger than the bound
    assert cache.size("s3://b/d2", V1, names, "0099.h5") == 1099
    assert cache.size("s3://b/big", V1, BlockNames("", 0, 4, 251), "0000.h5") is None


def test_a_hundred_thousand_blocks_cost_eight_bytes_each():
    cache = BlockSizeCache()
    names = BlockNames("", 0, 4, 100_000)
    cache.remember("s3://b/d", V1, names, _listing(names))
    (kept,) = cache._sizes.values()
    assert isinstance(kept, np.ndarray)
    assert kept.nbytes == 800_000
    assert cache.size("s3://b/d", V1, names, "99999.h5") == 100_999
