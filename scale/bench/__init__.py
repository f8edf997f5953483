"""Benchmarks: ``scale bench`` (``run``), its reports and plots (``report``, ``plots``) and
the serving-throughput measurement with its scripted server (``throughput``,
``fakeserver``)."""

import importlib


def __getattr__(name: str):
    # before 0.3, scale.bench was one module, today's scale.bench.run
    try:
        return getattr(importlib.import_module("scale.bench.run"), name)
    except AttributeError:
        raise AttributeError(f"module 'scale.bench' has no attribute {name!r}") from None
