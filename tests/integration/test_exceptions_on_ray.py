"""The backend-generic tests of ``tests/test_exceptions.py``, on Ray (see ``tests/conftest.py``)."""

import pytest

pytest.importorskip("ray")

from tests.test_exceptions import *  # noqa: F403

ON_RAY = True
