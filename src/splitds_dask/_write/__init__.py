"""Writers: any array through ``dask.array.store``, and frames streamed during an acquisition."""
