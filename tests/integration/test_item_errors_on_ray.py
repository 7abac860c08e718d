"""The backend-generic tests of ``tests/test_item_errors.py``, on Ray (see ``tests/conftest.py``)."""

import pytest

pytest.importorskip("ray")

from tests.test_item_errors import *  # noqa: F403

ON_RAY = True
