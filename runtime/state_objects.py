"""Objects a model updates in place, such as a key/value cache: what a compiled call owes them.

A decoder's step ``model(ids, past_key_values=cache)`` appends the step's keys and values to
``cache`` (transformers' ``DynamicCache.update`` reassigns each layer's tensors) and returns that
same object. A compiled program is a pure function: it reads the cache's tensors (its pytree leaves)
and returns the grown cache as a new object, leaving the caller's untouched. A loop that keeps
passing the object it made (``cache = DynamicCache()`` ... ``model(tok, past_key_values=cache)``)
would then read a stale cache at every step, silently.

So where the traced call returned an object it was passed (the capture records it:
``returns_its_state``), after each compiled call an input object of a class registered with pytree
(not a plain container or a record) whose class appears exactly once among the inputs and once among
the outputs takes the output's state (its ``__dict__``), and the output returns the input object
itself: what eager returns, by identity and by value. A model that returns a new object and leaves
its input alone is left alone; so are classes appearing several times (which input became which
output is not known) and calls without such objects (the usual case: one flag per variant).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils._pytree as pytree

_CONTAINERS = (tuple, list, dict)


def register_model_pytrees() -> None:
    """Teach pytree the state classes models take and return that it does not know: transformers'
    ``DynamicCache`` (a decoder returns one when ``use_cache`` is on, and a decode step takes one),
    through transformers' own registration, and ``EncoderDecoderCache`` (two of them). Done before a call is first flattened: a cache that
    is a leaf of the call's structure but a node of the captured program's is a mismatch, and
    export would run the model on the caller's own cache object (filling it with fake tensors)."""
    import sys

    if "transformers.cache_utils" not in sys.modules:
        return  # no transformers model in the process (its registration imports 1.7 s of transformers)
    try:
        from transformers.integrations.executorch import register_dynamic_cache_export_support
    except ImportError:  # an older or newer transformers without it: export names the type
        return
    register_dynamic_cache_export_support()
    _register_encoder_decoder_cache()


def _register_encoder_decoder_cache() -> None:
    """transformers' ``EncoderDecoderCache`` (T5, BART, Whisper decoders with ``use_cache``): its two
    ``DynamicCache`` children, rebuilt with its own constructor (which derives the rest)."""
    try:
        from transformers.cache_utils import EncoderDecoderCache
    except ImportError:
        return
    if EncoderDecoderCache in pytree.SUPPORTED_NODES:
        return
    names = ("self_attention_cache", "cross_attention_cache")
    pytree.register_pytree_node(
        EncoderDecoderCache,
        lambda c: ([getattr(c, n) for n in names], None),
        lambda children, _: EncoderDecoderCache(*children),
        serialized_type_name=f"{EncoderDecoderCache.__module__}.{EncoderDecoderCache.__name__}",
        flatten_with_keys_fn=lambda c: ([(pytree.GetAttrKey(n), getattr(c, n)) for n in names], None),
    )


def _state_objects(tree: Any) -> list:
    """The objects of registered pytree classes in ``tree`` (outermost first, not descending into them)."""
    found: list = []

    def visit(v):
        if isinstance(v, torch.Tensor) or v is None:
            return
        if type(v) in _CONTAINERS or isinstance(v, _CONTAINERS):
            for child in (v.values() if isinstance(v, dict) else v):
                visit(child)
            return
        if type(v) in pytree.SUPPORTED_NODES and not _is_output_record(v):
            found.append(v)
            return
        if type(v) in pytree.SUPPORTED_NODES:  # an output record (a dataclass, a ModelOutput): look inside
            children, _ = pytree.SUPPORTED_NODES[type(v)].flatten_fn(v)
            for child in children:
                visit(child)

    visit(tree)
    return found


def _is_output_record(v: Any) -> bool:
    """Dataclasses and transformers/diffusers output classes: records of results, never updated."""
    import dataclasses

    return dataclasses.is_dataclass(v)


def returns_its_state(args: tuple, kwargs: dict, output: Any) -> bool:
    """Whether ``output`` holds one of the state objects of the call ``(args, kwargs)`` itself."""
    given = {id(o) for o in _state_objects((args, kwargs))}
    return bool(given) and any(id(o) in given for o in _state_objects(output))


def spec_has_objects(spec: Any) -> bool:
    """Whether a call's pytree ``spec`` holds a node of a registered class other than containers
    and records (checked once per compiled variant, so calls without state objects pay nothing)."""
    import dataclasses

    typ = getattr(spec, "type", None)
    if typ is not None and typ not in _CONTAINERS and not issubclass(typ, _CONTAINERS) \
            and not dataclasses.is_dataclass(typ) and typ in pytree.SUPPORTED_NODES:
        return True
    children = spec.children() if callable(getattr(spec, "children", None)) else getattr(spec, "children_specs", [])
    return any(spec_has_objects(c) for c in children)


def carry_state(args: tuple, kwargs: dict, output: Any) -> Any:
    """``output`` with each state object the call passed in updated as eager updates it (see the
    module docstring) and returned in place of the program's new one."""
    inputs = _state_objects((args, kwargs))
    if not inputs:
        return output
    outputs = _state_objects(output)
    by_type: dict[type, list] = {}
    for obj in inputs:
        by_type.setdefault(type(obj), []).append(obj)
    swap: dict[int, Any] = {}
    for new in outputs:
        old = by_type.get(type(new), [])
        if len(old) != 1 or sum(type(o) is type(new) for o in outputs) != 1 or old[0] is new:
            continue
        old[0].__dict__.clear()
        old[0].__dict__.update(new.__dict__)
        swap[id(new)] = old[0]
    if not swap:
        return output
    return pytree.tree_map(lambda v: swap.get(id(v), v), output, is_leaf=lambda v: id(v) in swap)
