"""``python -m tracardi_tracker``: the same command line as ``tracardi-tracker``."""

from .cli import main

raise SystemExit(main())
