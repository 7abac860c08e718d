"""The command line, ``python -m mtasklite_like``: ``map`` (a function over the lines of a file,
resumably), ``demo``, and what both do on Ctrl-C (``interrupt.py``)."""
