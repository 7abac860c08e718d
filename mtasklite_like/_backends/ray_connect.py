"""Joining Ray, and what is checked before any actor is asked for.

- :func:`import_ray`: Ray is an optional extra; without it, ``backend='ray'`` fails with an
  ``ImportError`` that names it.
- :func:`check_options`: when the pool is built, the actor options of each worker are checked by
  name and type (a typo fails there, not in a remote scheduler), and a worker environment that sets
  ``CUDA_VISIBLE_DEVICES`` for a worker to which Ray assigns GPUs is refused: Ray sets that
  variable in each actor from the GPUs it reserved, and it must stay as Ray set it.
- :func:`connect`: a Ray already initialised in this process is used as it is; otherwise
  ``address`` (``'auto'``, ``'ray://host:10001'``, ``RAY_ADDRESS``) is joined, or a local Ray is
  started with modest defaults (no dashboard, a bounded object store). A Ray the pool started stays
  up for the rest of the process, for the next pool; the pool never shuts down a Ray.
- :func:`check_resources`: once connected, what the workers ask for is compared with what the
  cluster has, in total and on its largest node, so an impossible request is a clear error and
  not an actor pending forever.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from .._worker.run import WorkerSpec
from .config import BackendOptions

__all__ = [
    "INSTALL_HINT",
    "check_options",
    "check_resources",
    "connect",
    "import_ray",
    "local_defaults",
]

INSTALL_HINT = 'pip install "mtasklite-like[ray]"'

#: Ray actor options a worker may set (passed to ``ActorClass.options``)
ALLOWED = frozenset({
    "num_cpus",
    "num_gpus",
    "resources",
    "memory",
    "object_store_memory",
    "accelerator_type",
    "runtime_env",
    "scheduling_strategy",
    "placement_group",
    "placement_group_bundle_index",
    "placement_group_capture_child_tasks",
    "label_selector",
    "fallback_strategy",
    "enable_task_events",
    "namespace",
})
#: actor options the pool sets or replaces itself, with what to do instead
REFUSED = {
    "max_restarts": "the pool replaces dead actors itself: use on_worker_death='restart' (and retries=N)",
    "max_task_retries": "failed items are run again by the pool: use retries=N",
    "max_concurrency": "each actor runs one batch at a time, in order (the pool keeps several in flight)",
    "concurrency_groups": "each actor runs one batch at a time, in order",
    "allow_out_of_order_execution": "each actor runs its batches in the order they were sent",
    "max_pending_calls": "the pool bounds what each actor holds itself",
    "name": "the pool's actors are its own, one per worker, and end with the pool",
    "get_if_exists": "the pool's actors are its own, one per worker, and end with the pool",
    "lifetime": "the pool's actors are its own and end with the pool",
}
_NUMBERS = ("num_cpus", "num_gpus", "memory", "object_store_memory")

#: a local Ray started by the pool gets an object store of this share of memory, at most _STORE_MAX
_STORE_SHARE = 0.2
_STORE_MAX = 2 * 2**30
_STORE_MIN = 128 * 2**20


def import_ray() -> Any:
    """The ``ray`` module, or an ``ImportError`` that says which extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"backend='ray' needs Ray, which is not installed: {INSTALL_HINT} (or pip install ray)"
        ) from exc
    return ray


def check_options(options: BackendOptions | None, specs: Sequence[WorkerSpec]) -> None:
    """Check what the pool was given for Ray, without connecting (see the module docstring)."""
    import_ray()
    _check_picklable(specs)
    if options is None:
        return
    if options.address is not None and not isinstance(options.address, str):
        raise TypeError(f"address must be a string such as 'auto', not {options.address!r}")
    for i, opts in enumerate(options.per_worker):
        where = "backend_options" if len(set(map(id, options.per_worker))) == 1 else f"backend_options[{i}]"
        _check_actor_options(opts, where)
        gpus = opts.get("num_gpus") or 0
        if gpus and i < len(specs) and "CUDA_VISIBLE_DEVICES" in specs[i].env:
            raise ValueError(
                f"worker {i} asks Ray for num_gpus={gpus} and also sets CUDA_VISIBLE_DEVICES in "
                "worker_env; Ray sets CUDA_VISIBLE_DEVICES in each actor to the GPUs it reserved for "
                "it, so drop it from worker_env (or drop num_gpus and choose devices yourself)"
            )


def _check_picklable(specs: Sequence[WorkerSpec]) -> None:
    """Fail now, not at the first run, when a worker cannot be sent to an actor."""
    from ray import cloudpickle

    seen: set[int] = set()
    for spec in specs:
        if id(spec.worker) in seen:
            continue
        seen.add(id(spec.worker))
        try:
            cloudpickle.dumps(spec)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise TypeError(
                f"worker #{spec.index} ({spec.worker!r:.80}), its initializer or its arguments cannot be "
                f"pickled to send them to a Ray actor: {type(exc).__name__}: {exc}. Build what cannot "
                "be pickled (locks, open files, clients) inside the worker, with @delayed_init"
            ) from exc


def _check_actor_options(opts: Mapping[str, Any], where: str) -> None:
    for key, value in opts.items():
        if key in REFUSED:
            raise ValueError(f"{where}: {key!r} is not accepted: {REFUSED[key]}")
        if key not in ALLOWED:
            raise ValueError(
                f"{where}: unknown Ray actor option {key!r}; accepted: {', '.join(sorted(ALLOWED))}"
            )
        if key in _NUMBERS and not _is_amount(value):
            raise TypeError(f"{where}: {key} must be a number >= 0, not {value!r}")
        if key == "resources":
            if not isinstance(value, Mapping):
                raise TypeError(f"{where}: resources must be a dict such as {{'TPU': 1}}, not {value!r}")
            for name, amount in value.items():
                if not isinstance(name, str) or not _is_amount(amount):
                    raise TypeError(
                        f"{where}: resources maps names to numbers >= 0; got {name!r}: {amount!r}"
                    )
                if name in ("CPU", "GPU"):
                    raise ValueError(f"{where}: ask for {name} with num_{name.lower()}s, not in resources")


def _is_amount(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def local_defaults() -> dict[str, Any]:
    """``ray.init`` arguments for a local Ray the pool starts: no dashboard, a modest object store."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    store = int(min(_STORE_MAX, max(_STORE_MIN, total * _STORE_SHARE)))
    return {"include_dashboard": False, "object_store_memory": store}


def connect(address: str | None) -> bool:
    """Make sure this process is connected to a Ray; return True when this call started one.

    A Ray already initialised is used as it is (``address`` must then name it or be None). A Ray
    started here is never shut down by the pool: it serves the next pools of this process and
    ends with it.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address is not None or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address)
        return False
    ray.init(**local_defaults())
    return True


def check_resources(per_worker: Sequence[Mapping[str, Any]]) -> None:
    """Refuse what the connected cluster can never give: more than it has in total, or more for
    one worker than its largest node has (an actor cannot span nodes)."""
    ray = import_ray()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive", n.get("alive", False))]
    totals: dict[str, float] = {}
    for node in nodes:
        for name, amount in node.items():
            totals[name] = totals.get(name, 0.0) + float(amount)
    asked: dict[str, float] = {}
    for i, opts in enumerate(per_worker):
        need = _needs(opts)
        for name, amount in need.items():
            if amount <= 0:
                continue
            asked[name] = asked.get(name, 0.0) + amount
            biggest = max((float(node.get(name, 0.0)) for node in nodes), default=0.0)
            if amount > biggest:
                raise ValueError(
                    f"worker {i} asks for {_show(name, amount)} but no node of the Ray cluster has that "
                    f"much (the largest has {_show(name, biggest)}; the cluster: {_summary(totals)}); its "
                    "actor would wait forever. Ask for less in backend_options, or add nodes"
                )
    implicit = any(opts.get("num_cpus") is None and _needs(opts) for opts in per_worker)
    for name, amount in asked.items():
        have = totals.get(name, 0.0)
        if amount > have + 1e-9:
            why = (
                " (Ray reserves one CPU for each actor that asks for other resources but not for "
                "num_cpus: pass num_cpus, 0 or a fraction, to reserve less)"
                if name == "CPU" and implicit else ""
            )
            raise ValueError(
                f"the {len(per_worker)} workers ask for {_show(name, amount)} in all{why} but the Ray "
                f"cluster has {_show(name, have)} ({_summary(totals)}); some actors would wait forever. "
                "Use fewer workers (n_jobs), ask for less each in backend_options (fractions such as "
                "num_gpus=0.5 share a device), or add nodes"
            )
    if not any(opts.get("num_cpus") is not None for opts in per_worker) and totals.get("CPU", 0.0) < 1:
        raise ValueError(
            "the Ray cluster has no CPU to place actors on; pass backend_options={'num_cpus': 0} to "
            "place them anyway, or add a node with CPUs"
        )


def _needs(opts: Mapping[str, Any]) -> dict[str, float]:
    """What one actor holds while it lives. Ray's defaults: an actor that asks for nothing holds
    no CPU (it needs one free only to be placed); one that asks for other resources and not for
    ``num_cpus`` holds one CPU."""
    need = {name: float(amount) for name, amount in (opts.get("resources") or {}).items()}
    if opts.get("num_gpus") is not None:
        need["GPU"] = float(opts["num_gpus"])
    if opts.get("memory") is not None:
        need["memory"] = float(opts["memory"])
    if opts.get("num_cpus") is not None:
        need["CPU"] = float(opts["num_cpus"])
    elif any(amount > 0 for amount in need.values()):
        need["CPU"] = 1.0
    return need


def _show(name: str, amount: float) -> str:
    text = f"{amount:g}"
    if name == "memory":
        return f"{amount / 2**30:.3g} GiB of memory"
    return f"{text} {name}"


def _summary(totals: Mapping[str, float]) -> str:
    shown = [f"{_show(name, amount)}" for name, amount in sorted(totals.items())
             if not name.startswith("node:") and name not in ("object_store_memory",)]
    return ", ".join(shown) or "no resources"
