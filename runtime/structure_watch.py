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
Blade's own capture (of any watched module: export reparametrizes every submodule) and by the
module's own forward in an eager run (a rotary cache registering a buffer) are not counted: they
happen in the calling thread inside ``own_changes``; other threads' changes meanwhile count. PEFT's adapter layers change what they compute through plain
attributes (``merge``/``unmerge`` for ``fuse_lora``, the active adapter, the scale): calls of
those methods count too (``TUNER_METHODS``). Not seen: other plain attributes that change
behaviour without touching those containers (diffusers' ``set_attn_processor`` swaps an object
attribute), and module-global hooks; the README says to optimize after such changes.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager

import torch
from torch.utils.hooks import RemovableHandle

WATCHED = ("_modules", "_parameters", "_buffers", "_forward_hooks", "_forward_pre_hooks")
_MISSING = object()
#: changes made by this thread are Blade's own (a capture reparametrizes every submodule, of
#: every watched tree) or the module's own forward's (an eager run); other threads' still count
_OWN = threading.local()


@contextmanager
def own_changes():
    """Changes the current thread makes meanwhile are not counted by any watch."""
    _OWN.depth = getattr(_OWN, "depth", 0) + 1
    try:
        yield
    finally:
        _OWN.depth -= 1


def running_own() -> bool:
    """Whether the current thread is inside one of Blade's own eager runs or captures of an
    original module (``ModuleGate``): there the model's forward is its own, never routed back
    into the optimized module (``compiler/methods.py``)."""
    return getattr(_OWN, "depth", 0) > 0


class StructureWatch:
    def __init__(self, root: torch.nn.Module):
        self.version = 0
        self.last_change = ""
        self._lock = threading.Lock()
        self.wrap(root)

    def wrap(self, root: torch.nn.Module) -> None:
        """Watch every submodule of ``root`` (again after a change: new submodules join)."""
        for name, m in root.named_modules(remove_duplicate=True):
            if isinstance(m, torch.jit.ScriptModule):  # its containers are views of the C++ module
                continue
            if _is_tuner_layer(m):
                _watch_tuner_methods(type(m))
            for attr in WATCHED:
                d = m.__dict__.get(attr)
                if type(d) not in (dict, OrderedDict, _WatchedDict, _WatchedOrderedDict):
                    continue
                if not isinstance(d, _Mixin):  # a submodule optimized on its own too has two watches
                    cls = _WatchedOrderedDict if type(d) is OrderedDict else _WatchedDict
                    new = cls(d)
                    new._blade_where = f"{name or type(root).__name__}.{attr.strip('_')}"
                    _repoint_handles(d, new)
                    d = m.__dict__[attr] = new
                if not any(r() is self for r in d._blade_watches):
                    d._blade_watches = d._blade_watches + (weakref.ref(self),)

    def changed(self, where: str) -> None:
        if getattr(_OWN, "depth", 0):
            return
        with self._lock:
            self.version += 1
            self.last_change = where


def _repoint_handles(old: dict, new: dict) -> None:
    """Hook handles made before the watch (``h = m.register_forward_hook(f)``) hold a weak
    reference to the hooks container; point them at its replacement, or ``h.remove()`` would
    silently do nothing. Only containers something refers to weakly are searched."""
    refs = weakref.getweakrefs(old)
    if not refs:
        return
    for ref in refs:
        for holder in gc.get_referrers(ref):
            if isinstance(holder, RemovableHandle) and getattr(holder, "hooks_dict_ref", None) is ref:
                holder.hooks_dict_ref = weakref.ref(new)
            elif isinstance(holder, dict) and holder.get("hooks_dict_ref") is ref:
                holder["hooks_dict_ref"] = weakref.ref(new)


def _notify(d, key) -> None:
    for ref in d._blade_watches:
        watch = ref()
        if watch is not None:
            watch.changed(f"{d._blade_where}[{key!r}] was set or removed")


#: methods of PEFT's adapter layers (``BaseTunerLayer``) that change what their forward computes
#: through plain attributes the containers do not hold: merging LoRA into the base weight
#: (``merged_adapters``: diffusers' ``fuse_lora``/``unfuse_lora``), the active adapters, their
#: scales, enabling and disabling them
TUNER_METHODS = ("merge", "unmerge", "set_adapter", "enable_adapters", "set_scale", "scale_layer",
                 "unscale_layer", "delete_adapter")


def _is_tuner_layer(m: torch.nn.Module) -> bool:
    return hasattr(m, "merged_adapters") and callable(getattr(m, "merge", None)) and \
        callable(getattr(m, "unmerge", None))


def _watch_tuner_methods(cls: type) -> None:
    """Wrap, once per class, the state-changing methods of an adapter layer class so that a call
    counts as a change for every watch of the instance (found through its watched containers).
    A compiled program traced the layer's forward with its state of then: after ``fuse_lora``
    it would apply LoRA a second time on top of the merged weight (a silent wrong answer)."""
    for name in TUNER_METHODS:
        fn = getattr(cls, name, None)
        if fn is None or getattr(fn, "_blade_watched", False):
            continue

        def wrapper(self, *args, _fn=fn, _name=name, **kwargs):
            result = _fn(self, *args, **kwargs)
            d = self.__dict__.get("_parameters")
            for ref in getattr(d, "_blade_watches", ()):
                watch = ref()
                if watch is not None:
                    watch.changed(f"{getattr(d, '_blade_where', type(self).__name__).rsplit('.', 1)[0]}."
                                  f"{_name}() was called")
            return result

        wrapper._blade_watched = True
        wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        setattr(cls, name, wrapper)


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


def _tuner_state(m: torch.nn.Module) -> tuple:
    scaling = getattr(m, "scaling", None)
    return (tuple(getattr(m, "merged_adapters", ())), tuple(getattr(m, "active_adapters", ()) or ()),
            bool(getattr(m, "disable_adapters", False)),
            tuple(sorted(scaling.items())) if isinstance(scaling, dict) else None)


def _ref(x):
    try:
        return weakref.ref(x)
    except TypeError:  # e.g. a builtin used as a hook: held strongly (small)
        return lambda x=x: x


class StructureSnapshot:
    """What a compiled program was traced from: every submodule, parameter, buffer and forward
    hook by name and identity (held weakly: a freed object whose id is reused never compares
    equal), and the state of PEFT adapter layers. ``matches(root)``: the structure is that again,
    e.g. after diffusers' ``fuse_lora()`` + ``unload_lora()``, which merge the adapters into the
    base weights in place and put the original layers back: the compiled code still computes
    the model, and need not be compiled again."""

    def __init__(self, root: torch.nn.Module):
        self._entries = self._take(root)

    @staticmethod
    def _take(root: torch.nn.Module) -> list:
        entries = []
        for name, m in root.named_modules(remove_duplicate=False):
            entries.append((name, _ref(m)))
            for attr in ("_parameters", "_buffers", "_forward_hooks", "_forward_pre_hooks"):
                d = m.__dict__.get(attr) or {}
                entries.append((attr, tuple((k, None if v is None else _ref(v)) for k, v in d.items())))
            if _is_tuner_layer(m):
                entries.append(("adapter state", _tuner_state(m)))
        return entries

    def matches(self, root: torch.nn.Module) -> bool:
        now = []
        for name, m in root.named_modules(remove_duplicate=False):
            now.append((name, m))
            for attr in ("_parameters", "_buffers", "_forward_hooks", "_forward_pre_hooks"):
                d = m.__dict__.get(attr) or {}
                now.append((attr, tuple(d.items())))
            if _is_tuner_layer(m):
                now.append(("adapter state", _tuner_state(m)))
        if len(now) != len(self._entries):
            return False
        for (key, then), (key_now, value) in zip(self._entries, now):
            if key != key_now:
                return False
            if key == "adapter state":
                if then != value:
                    return False
            elif isinstance(then, tuple):
                if len(then) != len(value) or any(
                        k != k2 or (r is None) != (v is None) or (r is not None and r() is not v)
                        for (k, r), (k2, v) in zip(then, value)):
                    return False
            elif then() is not value:
                return False
        return True


# --------------------------------------------------------------------------------------------
# the gate of an original module: eager runs share it, a compile (which traces it) takes it alone
# --------------------------------------------------------------------------------------------

class ModuleGate:
    """Many eager runs of the original module at once, or one compile (which traces it) alone."""

    def __init__(self, module: torch.nn.Module) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        #: structure changes the user makes (not those of a capture or of the module's own forward)
        self.watch = StructureWatch(module)

    @contextmanager
    def eager_run(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writing)
            self._readers += 1
        try:
            with own_changes():
                yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def compile(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and self._readers == 0)
            self._writing = True
        try:
            with own_changes():  # export swaps the parameters of every submodule and restores them
                yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


_GATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def gate_for(module: torch.nn.Module) -> ModuleGate:
    """One gate per original module, shared by every ``BladeModule`` wrapping it."""
    with _GATES_LOCK:
        gate = _GATES.get(module)
        if gate is None:
            gate = _GATES[module] = ModuleGate(module)
        return gate
