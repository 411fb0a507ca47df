"""The case registry of ``benchmarks/probe_heldout.py``: ``@case(example, shapes)`` records a model
factory with the shape it is compiled at and the shapes it then serves."""

CASES = {}


def case(example, shapes):
    def deco(fn):
        CASES[fn.__name__] = (fn, example, shapes)
        return fn
    return deco
