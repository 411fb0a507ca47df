"""Noticing that a compiled module's structure changed, so its compiled code is never run stale.

A compiled program references the module's parameters and buffers (in-place updates such as
``fuse_lora`` or ``load_state_dict`` take effect on the next call), but it was traced from the
module's structure: which submodules, parameters, buffers and forward hooks it had. Replacing a
submodule (PEFT injecting LoRA layers, ``fuse_qkv_projections``), assigning a new ``Parameter``,
registering a buffer or a hook changes what eager PyTorch computes while the compiled code would
silently compute the old model.

``StructureWatch`` replaces the containers torch keeps that structure in (``_modules``,
``_parameters``, ``_buffers``, ``_forward_hooks``, ``_forward_pre_hooks`` of every submodule) by
subclasses that count every change, so a call costs one integer comparison. The containers copy
and pickle as the plain ones (a ``deepcopy`` of the model is not watched). Changes made by
Blade's own capture and by the module's own forward in an eager run (a rotary cache registering a
buffer) are not counted (``paused``). Not seen: plain attributes that change behaviour without
touching those containers (diffusers' ``set_attn_processor`` swaps an object attribute), and
module-global hooks; the README says to optimize after such changes.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager

import torch

WATCHED = ("_modules", "_parameters", "_buffers", "_forward_hooks", "_forward_pre_hooks")
_MISSING = object()


class StructureWatch:
    def __init__(self, root: torch.nn.Module):
        self.version = 0
        self.last_change = ""
        self._paused = 0
        self._lock = threading.Lock()
        self.wrap(root)

    def wrap(self, root: torch.nn.Module) -> None:
        """Watch every submodule of ``root`` (again after a change: new submodules join)."""
        for name, m in root.named_modules(remove_duplicate=True):
            for attr in WATCHED:
                d = m.__dict__.get(attr)
                if d is None:
                    continue
                if not isinstance(d, _Mixin):  # a submodule optimized on its own too has two watches
                    cls = _WatchedOrderedDict if isinstance(d, OrderedDict) else _WatchedDict
                    d = m.__dict__[attr] = cls(d)
                    d._blade_where = f"{name or type(root).__name__}.{attr.strip('_')}"
                if not any(r() is self for r in d._blade_watches):
                    d._blade_watches = d._blade_watches + (weakref.ref(self),)

    @contextmanager
    def paused(self):
        with self._lock:
            self._paused += 1
        try:
            yield
        finally:
            with self._lock:
                self._paused -= 1

    def changed(self, where: str) -> None:
        with self._lock:
            if self._paused:
                return
            self.version += 1
            self.last_change = where


def _notify(d, key) -> None:
    for ref in d._blade_watches:
        watch = ref()
        if watch is not None:
            watch.changed(f"{d._blade_where}[{key!r}]")


class _Mixin:
    """Counts every mutation; copies and pickles as the plain container."""

    _blade_watches: tuple = ()  # weak references to every StructureWatch of a tree holding it
    _blade_where = ""

    def __setitem__(self, key, value):
        old = self.get(key, _MISSING)
        super().__setitem__(key, value)
        if old is not value:
            _notify(self, key)

    def __delitem__(self, key):
        super().__delitem__(key)
        _notify(self, key)

    def pop(self, key, *default):
        had = key in self
        value = super().pop(key, *default)
        if had:
            _notify(self, key)
        return value

    def popitem(self, *args):
        item = super().popitem(*args)
        _notify(self, item[0])
        return item

    def clear(self):
        if self:
            _notify(self, "*")
        super().clear()

    def update(self, *args, **kwargs):
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other):
        self.update(other)
        return self

    def __reduce_ex__(self, protocol):
        plain = OrderedDict if isinstance(self, OrderedDict) else dict
        return plain, (plain(self),)


class _WatchedDict(_Mixin, dict):
    pass


class _WatchedOrderedDict(_Mixin, OrderedDict):
    pass
