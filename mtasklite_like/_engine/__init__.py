"""The run engine: turns one input iterable into results, driven by the consumer's ``next()``.

``run.py`` is the loop and holds the data-flow sketch; each of the other modules does one job
for it (reading the input, admission, the ledger, release, faults, the worker set, pacing, byte
budgets, batch sizes), and ``results.py`` / ``async_results.py`` are what the caller iterates.
Nothing here knows how workers run: that is ``_backends``'s job, and what a worker does is
``_worker``'s.
"""
