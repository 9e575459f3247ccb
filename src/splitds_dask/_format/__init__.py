"""The on-disk format without I/O of data: metadata, physical metadata, block files, geometry."""
