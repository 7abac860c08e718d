"""The backend-generic tests of ``tests/test_delayed_init.py``, on Ray (see ``tests/conftest.py``)."""

import pytest

pytest.importorskip("ray")

from tests.test_delayed_init import *  # noqa: F403

ON_RAY = True
