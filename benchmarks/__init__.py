"""Benchmarks of ``mtasklite_like.Pool`` against the pools people use instead.

Run everything with ``python -m benchmarks`` (``--quick`` for a smoke run of about a minute,
``--only NAME`` for one workload, ``--repeat N``, ``--out DIR``). See ``docs/performance.md``.

Modules:

- ``workloads``: the task functions (module level, so process pools can pickle them by name) and
  the table of workloads: inputs, configurations and targets;
- ``peers``: one runner per configuration (ours and the peers), each mapping a task over an
  input and returning the results as a list;
- ``measure``: the measurement loops (alternating pairs after warm-ups, medians);
- ``memory``: the peak-RSS probe, run in a child process of its own;
- ``worker_memory``: the ``leak`` and ``pressure`` rows (``max_worker_memory`` against a leaking
  task, ``min_available_memory`` while another process takes memory), every run in a child process;
- ``observability``: the ``logs`` and ``task-progress`` rows (workers' log records forwarded to the
  caller against a file per worker, every run in a child process; ``progress()`` called in a task);
- ``report``: the console table (also saved as ``benchmark.txt``), ``benchmark.json`` and the chart.

This package imports nothing heavy at import time, so ``python -m benchmarks.memory`` starts a
lean child process.
"""
