"""Methods of the original model called on its optimized module: ``opt.generate(ids)`` on an
optimized transformers model, ``pipe.vae.decode(z)`` after ``pipe.vae = blade.optimize(pipe.vae)``.

``BladeModule`` looks up the attributes it lacks on the original model, so such a method used to
run the original's code in eager PyTorch, its forward calls included: the optimized module did
nothing for it. Now each public method of the original becomes a ``MethodEntry``:

* Its first call runs the method eagerly with the model's forward *routed* through the optimized
  module (``routed_forward``), and watches what it does.
* A method that called the model's forward (transformers' ``generate``: a Python loop around
  forward calls) keeps running so: its loop stays Python, and every forward call in it is a call
  of the optimized module (compiled variants, guards, fallback).
* A method that did not, took a tensor, returned tensors and changed nothing of the model's
  structure (diffusers' ``AutoencoderKL.decode``) is a computation of its own: from its second call
  on it is compiled as one, by an optimized module of its own over ``_MethodAsModule`` with the
  same configuration (its variants, guards and eager fallback are any optimized module's).
* Anything else (setters, ``fuse_lora``, methods that take or return no tensor) runs eagerly as
  before.

Routing is per thread: while a routed method runs in one thread, other threads calling the
original model directly get its own forward; so do Blade's own eager runs and captures of the
model (``structure_watch.running_own``), which would otherwise call back into the optimized module.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading

import torch
import torch.utils._pytree as pytree

from blade.runtime.structure_watch import running_own

_MISSING = object()
_THREAD = threading.local()  # .routes: {id(original): the optimized module} of this thread's routed calls
_INSTALL_LOCK = threading.Lock()


class _MethodAsModule(torch.nn.Module):
    """One method of a model as a module of its own, so that it can be optimized like a forward.
    Its class (made per method by ``method_module``) gives ``forward`` the method's signature."""

    def __init__(self, model: torch.nn.Module, method: str):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, *args, **kwargs):
        return getattr(self.model, self.method)(*args, **kwargs)

    @property
    def training(self) -> bool:  # the model's mode (train()/eval() of the model reach it)
        model = self.__dict__.get("_modules", {}).get("model")
        return bool(model.training) if model is not None else False

    @training.setter
    def training(self, mode: bool) -> None:
        model = self.__dict__.get("_modules", {}).get("model")
        if model is not None:
            model.training = mode


def method_module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """``model.<name>`` as a module whose forward takes the method's arguments; reports name it
    ``Model.name``."""
    def forward(self, *args, **kwargs):
        return getattr(self.model, name)(*args, **kwargs)

    # inspect.signature follows __wrapped__ (a __signature__ would be copied, self included, onto
    # wrappers of the bound forward, such as the one the capture makes)
    forward.__wrapped__ = getattr(type(model), name)
    cls = type(f"{type(model).__name__}.{name}", (_MethodAsModule,), {"forward": forward})
    return cls(model, name)


class _Router:
    """The original model's forward while routed methods run (an instance attribute standing in
    for the class's forward, with its signature: transformers reads it)."""

    def __init__(self, original: torch.nn.Module):
        self.original = original
        self.previous = original.__dict__.get("forward", _MISSING)  # accelerate's hooks set one
        self.users = 0
        own = original.forward

        @functools.wraps(own)
        def forward(*args, **kwargs):
            blade_module = getattr(_THREAD, "routes", {}).get(id(original))
            if blade_module is None or running_own():
                return own(*args, **kwargs)
            _THREAD.forward_calls = getattr(_THREAD, "forward_calls", 0) + 1
            return blade_module(*args, **kwargs)

        self.forward = forward


_ROUTERS: dict[int, _Router] = {}


class routed_forward:
    """While active, calls of ``original``'s forward made in this thread run ``blade_module``."""

    def __init__(self, blade_module: torch.nn.Module, original: torch.nn.Module):
        self.blade_module, self.original = blade_module, original

    def __enter__(self):
        key = id(self.original)
        with _INSTALL_LOCK:
            router = _ROUTERS.get(key)
            if router is None:
                router = _ROUTERS[key] = _Router(self.original)
                self.original.__dict__["forward"] = router.forward
            router.users += 1
        routes = _THREAD.__dict__.setdefault("routes", {})
        self.outer = routes.get(key, _MISSING)
        routes[key] = self.blade_module
        return self

    def __exit__(self, *exc):
        key = id(self.original)
        if self.outer is _MISSING:
            del _THREAD.routes[key]
        else:
            _THREAD.routes[key] = self.outer
        with _INSTALL_LOCK:
            router = _ROUTERS[key]
            router.users -= 1
            if router.users == 0:
                del _ROUTERS[key]
                if router.previous is _MISSING:
                    self.original.__dict__.pop("forward", None)
                else:
                    self.original.__dict__["forward"] = router.previous
        return False


def _has_tensor(tree) -> bool:
    return any(isinstance(leaf, torch.Tensor) for leaf in pytree.tree_leaves(tree))


class MethodEntry:
    """``optimized.<name>``: the original's method, routed or compiled (module docstring).
    ``mode`` says which: "unseen" before the first call, then "routed", "compiled" or "eager"."""

    def __init__(self, blade_module, name: str):
        self.blade_module = blade_module
        self.name = name
        self.mode = "unseen"
        self.compiled = None  # the optimized module of mode "compiled"
        self._lock = threading.Lock()
        original = blade_module.original
        functools.update_wrapper(self, getattr(original, name), updated=())

    def __call__(self, *args, **kwargs):
        if self.mode == "compiled":
            return self.compiled(*args, **kwargs)
        original = self.blade_module.original
        method = getattr(original, self.name)
        if self.mode != "unseen":
            with routed_forward(self.blade_module, original):
                return method(*args, **kwargs)
        watch = self.blade_module._gate.watch
        version, calls = watch.version, getattr(_THREAD, "forward_calls", 0)
        with routed_forward(self.blade_module, original):
            result = method(*args, **kwargs)
        with self._lock:
            if self.mode == "unseen":
                self._classify(getattr(_THREAD, "forward_calls", 0) > calls, watch.version != version,
                               args, kwargs, result)
        return result

    def _classify(self, called_forward: bool, changed: bool, args, kwargs, result) -> None:
        what = f"{type(self.blade_module.original).__name__}.{self.name}"
        if called_forward:
            self.mode = "routed"
            print(f"[blade] {what} calls the model's forward: it runs as written, with every forward call "
                  "optimized", file=sys.stderr, flush=True)
        elif not changed and _has_tensor((args, kwargs)) and _has_tensor(result):
            from blade.module import BladeModule

            parent = self.blade_module
            self.compiled = BladeModule(method_module(parent.original, self.name), parent._config,
                                        parent._allow_tracing)
            self.mode = "compiled"
            print(f"[blade] {what} computes tensors without calling forward: it is compiled as a program of its "
                  "own from its next call on", file=sys.stderr, flush=True)
        else:
            self.mode = "eager"


def method_entry(blade_module, name: str, value):
    """What ``blade_module.<name>`` answers for the original's attribute ``value``: a
    ``MethodEntry`` for a public method of the original (one per name), else ``value``."""
    original = blade_module.original
    if name.startswith("_") or not inspect.ismethod(value) or value.__self__ is not original:
        return value
    entries = blade_module.__dict__.setdefault("_method_entries", {})
    entry = entries.get(name)
    if entry is None:
        entry = entries[name] = MethodEntry(blade_module, name)
    return entry
