"""Remote storage: split datasets at fsspec URLs (``s3://``, ``gs://``, ``https://``), read by
byte ranges and written by upload; fsspec is imported only when a URL is opened."""
