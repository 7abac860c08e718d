"""The machinery behind the drop-in modules whose public paths are other libraries' (``pqdm``,
``mtasklite.processes``/``threads``, ``multiprocessing.Pool``): one implementation each, kept
here so that the public modules stay thin."""
