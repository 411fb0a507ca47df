"""Executors that run a compiled module's IR directly: the reference executor (``reference.py``,
PyTorch ops only: the semantic oracle every kernel and every Program is tested against) and the
kernel executor (``triton_executor.py`` with ``launch.py``: generated Triton kernels for fused
groups, PyTorch for library ops). ``BladeModule`` (``blade/module.py``) runs its variants with
them today.

They read xDSL IR, so they live with the compiler. The runtime proper (``runtime/``: the Program
format, its executor, the C++ core) imports none of this; a Program is what crosses over.
"""
