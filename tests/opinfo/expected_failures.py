"""OpInfo ops that may fail ``test_opinfo.py``, each with its reason. The list only shrinks: an op
on it that passes fails the suite ("unexpected pass: remove it from the list").

Reasons start with their class:

* ``out of scope``: complex32 / uint64 dtypes, sparse tensors, in-place ops on inputs (random
  fills, resize, running statistics). Blade compiles side-effect-free inference programs.
* ``limitation``: a named Blade limitation, with what would lift it.
"""

_IN_PLACE_RANDOM = "out of scope: in-place random fill of an input (Tensor.{}_), a mutation"
_RUNNING_STATS = ("out of scope: updates running statistics in place (training-mode normalisation); "
                  "Blade compiles side-effect-free inference programs")

EXPECTED: dict[str, str] = {
    # ---- out of scope
    "cauchy": _IN_PLACE_RANDOM.format("cauchy"),
    "exponential": _IN_PLACE_RANDOM.format("exponential"),
    "geometric": _IN_PLACE_RANDOM.format("geometric"),
    "log_normal": _IN_PLACE_RANDOM.format("log_normal"),
    "normal.in_place": _IN_PLACE_RANDOM.format("normal"),
    "uniform": _IN_PLACE_RANDOM.format("uniform"),
    "resize_": "out of scope: resizes its input in place (torch.export cannot capture it either)",
    "resize_as_": "out of scope: resizes its input in place (torch.export cannot capture it either)",
    "_native_batch_norm_legit": _RUNNING_STATS,
    "_batch_norm_with_update": _RUNNING_STATS,
    "nn.functional.instance_norm": _RUNNING_STATS,
    "chalf": "out of scope: complex32 dtype",
    "hash_tensor": "out of scope: uint64 dtype",
    "sparse.mm.reduce": "out of scope: sparse (CSR) tensors",
    "to_sparse": "out of scope: sparse tensors",
    # ---- named limitations
    "tensor_split": ("limitation: split by tensor indices gives views whose storage offsets depend on tensor "
                     "values; Blade's value-semantics types carry data-dependent sizes but not offsets"),
    "linalg.matrix_rank.hermitian": ("limitation: its decomposition takes amax over the eigenvalues, which "
                                     "fails on the empty (0, 0) sample eager accepts; needs the op kept whole"),
}

#: GPU-only entries, by op id or (op id, dtype name); the CPU list applies on the GPU as well.
EXPECTED_GPU: dict = {}
