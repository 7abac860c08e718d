"""The fault matrix's Ray cases (``test_fault_on_ray`` of ``tests/test_fault_matrix.py``), on a
local Ray (see ``tests/conftest.py``)."""

import pytest

pytest.importorskip("ray")

from tests.test_fault_matrix import *  # noqa: F403

ON_RAY = True
