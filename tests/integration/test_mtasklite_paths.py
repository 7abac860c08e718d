"""mtasklite's module paths: each name mtasklite's modules offer is importable from the same path here.

``from mtasklite.delayed_init import delayed_init`` and the like must keep working after the import
is renamed, and the package's own ``delayed_init`` must stay the decorator whichever is imported
first. What mtasklite's modules hold is read from the installed ``mtasklite`` (in the test extra).
"""

from __future__ import annotations

import importlib
import os
import pickle
import subprocess
import sys
import textwrap
import types

import pytest

import mtasklite_like
import mtasklite_like.processes
import mtasklite_like.threads
from mtasklite_like import ResultIterator

pytest.importorskip("mtasklite")

pytestmark = pytest.mark.timeout(60)

#: mtasklite's modules; each has a counterpart at the same path under mtasklite_like
MODULES = [
    "mtasklite",
    "mtasklite.constants",
    "mtasklite.delayed_init",
    "mtasklite.pool",
    "mtasklite.pqdm",
    "mtasklite.processes",
    "mtasklite.threads",
    "mtasklite.utils",
    "mtasklite.version",
]
#: mtasklite's queue machinery, which has no counterpart (docs/migration/mtasklite.md says so)
NO_COUNTERPART = {"mtasklite.pool": {"WorkerWrapper", "SortedOutputHelper", "TINY_QUEUE_TIMEOUT"}}
#: where mtasklite's modules import helpers from, which are not theirs to offer
FOREIGN = {"builtins", "typing", "functools", "_heapq", "heapq"}


def _offered(module_name: str) -> list[str]:
    """The names ``from <module_name> import NAME`` finds in mtasklite: what the module defines or
    imports from mtasklite or tqdm, not modules and not the standard library's helpers."""
    module = importlib.import_module(module_name)
    names = []
    for name, value in vars(module).items():
        if name.startswith("__") and name != "__version__":
            continue
        if isinstance(value, types.ModuleType) or getattr(value, "__module__", None) in FOREIGN:
            continue
        if name in NO_COUNTERPART.get(module_name, ()):
            continue
        names.append(name)
    return sorted(names)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_name_is_importable_from_the_same_path(module_name):
    ours = importlib.import_module(module_name.replace("mtasklite", "mtasklite_like", 1))
    offered = _offered(module_name)
    assert offered
    assert [name for name in offered if not hasattr(ours, name)] == []


def test_the_counterparts_are_the_same_things():
    # (`import mtasklite_like.delayed_init as m` gives the decorator, as with mtasklite: the package's
    # name is the function; the module is in sys.modules)
    delayed_init_module = sys.modules["mtasklite_like.delayed_init"]
    from mtasklite_like.pool import Pool, ShellObject, WorkerPoolResultGenerator, is_valid_worker
    from mtasklite_like.pqdm import NO_EXPLICIT_POOL_KWARGS, CustomContextManager, _pqdm
    from mtasklite_like.version import __version__

    assert Pool is mtasklite_like.Pool
    assert WorkerPoolResultGenerator is ResultIterator
    assert ShellObject is delayed_init_module.ShellObject
    assert __version__ == mtasklite_like.__version__
    assert set(NO_EXPLICIT_POOL_KWARGS) == {
        "bounded", "exception_behaviour", "worker_or_worker_arr", "n_jobs", "use_threads"
    }
    assert is_valid_worker(abs) and not is_valid_worker(42)
    with _pqdm(range(5), abs, 2, use_threads=True, disable=True) as result:
        assert isinstance(result, CustomContextManager)
        assert [r for r in result] == [0, 1, 2, 3, 4]


def _pid(_x):
    return os.getpid()


class Scale:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return (os.getpid(), x * self.factor)


@pytest.mark.timeout(30)
def test_shell_object_builds_as_mtasklites_does_and_is_the_type_of_every_shell():
    from mtasklite_like.delayed_init import ShellObject, delayed_init

    shell = ShellObject(Scale, 3)
    assert shell(2)[1] == 6  # called directly: built once, then called, as in mtasklite
    copy = pickle.loads(pickle.dumps(ShellObject(Scale, factor=4)))
    assert isinstance(copy, ShellObject) and copy(1)[1] == 4

    @delayed_init
    class Doubler:
        def __call__(self, x):
            return 2 * x

    assert isinstance(Doubler(), ShellObject)
    assert not isinstance(Scale(1), ShellObject)
    with pytest.raises(TypeError, match="class"):
        ShellObject(Scale(1))

    results = [r for r in mtasklite_like.processes.pqdm(range(6), ShellObject(Scale, 10), 2, disable=True)]
    assert [value for _, value in results] == [0, 10, 20, 30, 40, 50]
    assert {pid for pid, _ in results} - {os.getpid()}  # built and run in the process workers


_IMPORT_ORDERS = {
    "submodule first": "import mtasklite_like.delayed_init\nfrom mtasklite_like import delayed_init\n",
    "from-import of the submodule first": (
        "from mtasklite_like.delayed_init import delayed_init as from_module, ShellObject\n"
        "from mtasklite_like import delayed_init\n"
        "assert from_module.__module__ == 'mtasklite_like._worker.delayed'\n"
    ),
    "package first": "from mtasklite_like import delayed_init\nimport mtasklite_like.pool\n",
    "pool first": "import mtasklite_like.pool\nfrom mtasklite_like import delayed_init\n",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("order", sorted(_IMPORT_ORDERS))
def test_the_package_delayed_init_decorates_whatever_is_imported_first(order):
    # A fresh interpreter: in this one the submodules are imported already.
    script = _IMPORT_ORDERS[order] + textwrap.dedent("""
        import mtasklite_like

        @delayed_init
        class Offset:
            def __init__(self, k):
                self.k = k

            def __call__(self, x):
                return x + self.k

        with mtasklite_like.Pool([Offset(100), Offset(100)], use_threads=True) as pool:
            print(list(pool(range(3))))

        @mtasklite_like.delayed_init
        class Again:
            def __call__(self, x):
                return x

        print(isinstance(Again(), Again))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[100,", "101,", "102]", "True"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("module_name", ["processes", "threads"])
@pytest.mark.parametrize("use_threads", [True, False])
def test_use_threads_overrides_the_module_as_in_mtasklite(module_name, use_threads):
    real = importlib.import_module(f"mtasklite.{module_name}").pqdm
    ours = getattr(mtasklite_like, module_name).pqdm
    with real(range(4), _pid, 2, use_threads=use_threads, disable=True) as pbar:
        real_pids = set(pbar)
    assert pbar.pool_obj.parent_obj.use_threads is use_threads
    with ours(range(4), _pid, 2, use_threads=use_threads, disable=True) as result:
        our_pids = set(result)
    assert result.pool_obj.parent_obj.use_threads is use_threads
    for pids in (real_pids, our_pids):
        assert (pids == {os.getpid()}) is use_threads
