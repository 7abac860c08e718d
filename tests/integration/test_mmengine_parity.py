"""``tests/test_mmengine.py`` again, with the real ``mmengine`` (``mmengine-lite``, in the
``integration`` extra) beside ours: its parity checks, skipped in the core suite, run here."""

import pytest

pytest.importorskip("mmengine.utils")

from tests.test_mmengine import *  # noqa: F403
