"""``python -m gradcheck``: the ``gradcheck`` command (:func:`gradcheck.cli.main`)."""

from __future__ import annotations

import sys

from gradcheck.cli import main

if __name__ == "__main__":
    sys.exit(main())
