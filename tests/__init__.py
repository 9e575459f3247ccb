"""The test suite of splitds-dask; shared helpers live in ``tests.helpers``."""
