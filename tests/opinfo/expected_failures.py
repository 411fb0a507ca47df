"""OpInfo ops that may fail ``test_opinfo.py``, each with its reason. The list only shrinks: an op
on it that passes fails the suite ("unexpected pass: remove it from the list").

Reasons start with their class:

* ``out of scope``: complex32 / uint64 dtypes, sparse tensors, in-place ops on inputs (random
  fills, resize, running statistics). Blade compiles side-effect-free inference programs.
* ``size-1 guard``, ``guard printing``: the shape service (another work item: wt-guards); remove
  the entries once it is merged.
* ``export refusal``: torch.export cannot capture the op; the fix is to run the whole module in
  eager PyTorch with a one-line message (another work item: wt-calls); remove once merged.
* ``limitation``: a named Blade limitation, with what would lift it.
"""

_IN_PLACE_RANDOM = "out of scope: in-place random fill of an input (Tensor.{}_), a mutation"
_RUNNING_STATS = ("out of scope: updates running statistics in place (training-mode normalisation); "
                  "Blade compiles side-effect-free inference programs")
_EXPORT = "export refusal ({}): whole-module eager run with a one-line message, being added in wt-calls"

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
    # ---- shape service (wt-guards)
    "squeeze": "size-1 guard: squeeze compiled at a non-1 size must guard that size (being fixed in wt-guards)",
    "squeeze_copy": "size-1 guard: squeeze compiled at a non-1 size must guard that size (being fixed in wt-guards)",
    "nn.functional.conv2d": "guard printing: a disjunction guard cannot be printed (being fixed in wt-guards)",
    "nn.functional.conv_transpose2d": "guard printing: a disjunction guard cannot be printed (being fixed in wt-guards)",
    "nn.functional.conv_transpose3d": "guard printing: a disjunction guard cannot be printed (being fixed in wt-guards)",
    # ---- torch.export refusals (wt-calls)
    "allclose": _EXPORT.format("data-dependent Python bool"),
    "equal": _EXPORT.format("data-dependent Python bool"),
    "cov": _EXPORT.format("aten.equal inside, a data-dependent Python bool"),
    "corrcoef": _EXPORT.format("aten.equal inside, a data-dependent Python bool"),
    "geqrf": _EXPORT.format("no fake-tensor kernel for aten.geqrf"),
    "histogramdd": _EXPORT.format("no fake-tensor kernel for aten._histogramdd_bin_edges"),
    "nn.functional.ctc_loss": _EXPORT.format("dynamic output shape of aten._ctc_loss"),
    "nn.functional.gaussian_nll_loss": _EXPORT.format("guards on a data-dependent value"),
    "linalg.lstsq": _EXPORT.format("dynamic output shape of aten.linalg_lstsq"),
    "linalg.lstsq.grad_oriented": _EXPORT.format("dynamic output shape of aten.linalg_lstsq"),
    # ---- named limitations
    "tensor_split": ("limitation: split by tensor indices gives views whose storage offsets depend on tensor "
                     "values; Blade's value-semantics types carry data-dependent sizes but not offsets"),
    "linalg.matrix_rank.hermitian": ("limitation: its decomposition takes amax over the eigenvalues, which "
                                     "fails on the empty (0, 0) sample eager accepts; needs the op kept whole"),
}

#: GPU-only entries, by op id or (op id, dtype name); the CPU list applies on the GPU as well.
EXPECTED_GPU: dict = {}
