"""Facts about the original format that several tests check, written down once.

Literal values from the reference notes, never taken from the package (a test that compared the
package with itself could not fail).
"""

from __future__ import annotations

# split_dataset's EmptySplitDataset.finalize writes exactly these keys, in this order.
ORIGINAL_METADATA_KEYS = [
    "shape_full",
    "shape_block",
    "crop_start",
    "crop_end",
    "padding",
    "resolution",
    "axis_order",
]
