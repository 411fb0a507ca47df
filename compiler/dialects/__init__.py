"""Blade's IR dialects, defined with xDSL. ``BLADE`` is the tensor-level dialect."""

from blade.dialects.blade import BLADE, OPS_BY_NAME

__all__ = ["BLADE", "OPS_BY_NAME"]
