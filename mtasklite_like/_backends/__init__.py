"""Backends: where workers run (the caller, threads, processes) behind one small interface."""

from .base import Backend, BatchDone, Event, WorkerDied, WorkerInitFailed, WorkerReady

__all__ = ["Backend", "BatchDone", "Event", "WorkerDied", "WorkerInitFailed", "WorkerReady"]
