"""``python -m tracardi_tracker.importer``: the ``tracardi-tracker import`` command on its own."""

from ._cli import main

raise SystemExit(main())
