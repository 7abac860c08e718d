"""The backend-generic tests of ``tests/test_order_and_bounds.py``, on Ray (see ``tests/conftest.py``)."""

import pytest

pytest.importorskip("ray")

from tests.test_order_and_bounds import *  # noqa: F403

ON_RAY = True
