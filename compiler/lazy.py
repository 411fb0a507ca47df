"""Modules imported on first use.

The IR needs PyTorch only to *run* ops (each op's reference semantics) and to map dtypes; parsing,
verifying, transforming and printing IR do not. The dialects therefore name ``torch`` through a
``LazyModule``, so ``blade-opt`` and the lit tests, which only rewrite IR, never pay torch's
import (about 3 s); the first attribute read imports it.
"""

from __future__ import annotations

import importlib
import types


class LazyModule(types.ModuleType):
    """A stand-in for the module ``name``; the first attribute read imports it."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_module"] = None

    def __getattr__(self, attr: str):
        module = self.__dict__["_module"]
        if module is None:
            module = self.__dict__["_module"] = importlib.import_module(self.__name__)
        return getattr(module, attr)
