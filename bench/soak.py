"""Soak: does ``focusmon watch`` hold its memory, threads and descriptors over hours?

The rig and the verdict are in ``support/soak.py`` (tests/integration/test_soak.py runs this
script for 80 s). Run: ``python bench/soak.py`` (30 minutes), ``--seconds 90`` for a short
run, ``--csv`` to keep the samples; ``--help`` for the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from soak import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
