"""Integrations with other tools: xarray backend, napari reader, dask.distributed clusters."""
