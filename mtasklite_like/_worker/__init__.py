"""What every worker runs, whatever it runs on: its callable built once (``@delayed_init`` shells
are built here, inside the worker), batches of items run one by one (``run.py``) or as coroutines
on an event loop of the worker's own (``coroutines.py``)."""
