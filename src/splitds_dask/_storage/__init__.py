"""Storage: bytes on disk. One HDF5 block file, its Blosc chunks, its filters, atomic writes."""
