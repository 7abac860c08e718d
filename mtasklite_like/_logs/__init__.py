"""Worker logs in the caller: ``logging`` records and warnings of workers reach the caller's handlers.

Every record gets two attributes, ``worker`` (the worker's index) and ``item`` (the input position
of the item running, 0-based; None between items), from a record factory chained over the one in
place (``records``), so a caller's format string may name ``%(worker)s %(item)s`` for any record,
its own ones included (None there).

Thread workers and the caller (``n_jobs=1``) run in the caller's process: their records reach its
handlers as any record does. A process worker or a Ray actor hands each record to a handler of its
own (``forward``), which sends it to the caller in a plain form (``records``): as it is emitted on a
process worker's result pipe, with the results of its batch from a Ray actor. The engine gives it to
``reemit``, which hands it to the caller's logger of the same name, so the caller's levels, filters
and handlers apply. Warnings a worker process issues travel the same way and are issued again in the
caller, with the worker and the item in their text.

``console`` keeps a progress bar whole while records are written to the console under it.
See docs/observability.md.
"""
