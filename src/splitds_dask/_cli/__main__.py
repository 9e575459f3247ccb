"""``python -m splitds_dask._cli``: the ``splitds`` command."""

from splitds_dask._cli.main import main

raise SystemExit(main())
