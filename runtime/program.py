"""The Program: the data-only boundary between the compiler and the runtime, and its artifact.

The compiler's last step (``blade.lower_program``) turns one compiled variant into a ``Program``;
the runtime (``runtime/program_executor.py``, later the C++ executor) only ever sees this. The
format lives in ``runtime/`` because the runtime owns what it consumes: the compiler imports it,
never the other way round, and this file imports nothing but the standard library (torch only
lazily, for its version in the metadata).

A Program holds

* ``symbols`` and ``bindings``: how each size symbol is read from an input dim (``dim = coeff * s + offset``);
  ``device_symbols``: further shape-program inputs the executor reads from the device (``sm_count``);
* one shape program (``shape_code``, the bytecode of ``runtime/shape_eval.py``) that emits every
  *slot*: each dim of each value, every buffer size, launch grid, launch scalar, variant
  predicate and check; everything else refers to slots by index;
* ``checks``: slots that must be non-zero (symbol ranges, guards, input dims that are expressions);
* ``values``: every tensor the steps read or write (dtype, dims as slots, and where it lives:
  an input, a weight by name, a constant blob, an arena buffer, an output buffer, a view); the
  first ``len(input_names)`` values are the inputs, in order;
* ``buffers``: the liveness plan (first and last step) and the byte size slot of each arena buffer;
* ``steps``: flat ``launch`` / ``library_call`` / ``fallback_call`` / ``view`` records;
* ``kernels``: generated kernels by content hash: source blob, entry points, signatures, variants;
* ``blobs``: binary payloads by sha256 (kernel sources, cubins, constant tensors).

Serialised as a directory: ``program.json`` plus ``blobs/<sha256>``. No pickle anywhere. ``load``
checks the metadata (format, blade, torch, triton versions, GPU arch) against what the caller
runs and every blob's hash, and refuses a mismatch with a message naming each difference.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT_VERSION = 1


class KernelRole(str, enum.Enum):
    """What a generated entry point does (the launcher keys argument packing on it, never on a
    name suffix)."""

    POINTWISE = "pointwise"          # one [BLOCK_M, BLOCK_K] tile per program
    ROW_NORM = "row_norm"            # whole rows per program (LayerNorm, softmax)
    GN_RESIDENT = "gn_resident"      # GroupNorm, one program per (image, group), group in registers
    GN_STATS = "gn_stats"            # GroupNorm statistics of the two-launch schedule
    GN_APPLY = "gn_apply"            # GroupNorm normalise + epilogue of the two-launch schedule


class StepKind(str, enum.Enum):
    LAUNCH = "launch"
    LIBRARY_CALL = "library_call"
    FALLBACK_CALL = "fallback_call"
    VIEW = "view"


class ValueKind(str, enum.Enum):
    INPUT = "input"        # the caller's tensor (``index`` into the inputs)
    WEIGHT = "weight"      # the user's parameter or buffer, by name, never copied
    CONSTANT = "constant"  # a tensor the compiler made (``blob``), read-only
    ARENA = "arena"        # an intermediate placed in the call's arena (``buffer``)
    OUTPUT = "output"      # a result the caller keeps: its own allocation, never reused
    VIEW = "view"          # a view of another value (made by a ``view`` step)


class ProgramFormatError(ValueError):
    """The artifact is malformed, was made for another environment, or is corrupt."""


@dataclass
class Value:
    kind: str
    dtype: str                    # torch dtype name: "float32", "float16", "int64", "bool"...
    dims: list[int]               # a slot per dim
    index: int | None = None      # INPUT: input position
    name: str | None = None       # WEIGHT: weight name
    blob: str | None = None       # CONSTANT: sha256 of the raw little-endian bytes
    buffer: int | None = None     # ARENA: index into ``buffers``


@dataclass
class Buffer:
    value: int                    # the value this buffer holds
    nbytes: int                   # slot: its size in bytes
    first: int                    # step that writes it
    last: int                     # last step that reads it (or any view of it)


@dataclass
class Step:
    kind: str                     # StepKind
    op: str                       # launch: kernel key; library_call: op name; fallback: aten target; view kind
    inputs: list[int]
    outputs: list[int]
    provider: str = ""            # library_call: provider name in the registry
    attrs: dict[str, Any] = field(default_factory=dict)  # JSON data; {"slot": k} marks a run-time size
    table: list[dict[str, Any]] = field(default_factory=list)  # launch: variant selection rows


@dataclass
class Program:
    symbols: list[str]
    bindings: list[dict[str, int]]          # {"symbol", "input", "dim", "coeff", "offset"}
    input_names: list[str]
    shape_code: list[int]
    nslots: int
    checks: list[dict[str, Any]]            # {"slot", "message"}
    values: list[Value]
    buffers: list[Buffer]
    steps: list[Step]
    outputs: list[int]
    kernels: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {"kind", "target"}
    #: shape-program inputs after ``symbols`` that the executor takes from the device ("sm_count")
    device_symbols: list[str] = field(default_factory=list)
    #: each slot's expression as text (for people; the executor never reads it)
    slot_text: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ reading
    def describe(self) -> str:
        """The Program as text: inputs, checks, then one line per step with its values' shapes."""
        def dims(v: int) -> str:
            val = self.values[v]
            shape = ", ".join(self.slot_text[d] if self.slot_text else f"#{d}" for d in val.dims)
            where = val.name if val.kind == ValueKind.WEIGHT.value else val.kind
            return f"%{v}<[{shape}], {val.dtype}, {where}>"

        lines = [f"program({', '.join(f'{n}: {dims(i)}' for i, n in enumerate(self.input_names))})"]
        lines += [f"  check {c['message']}" for c in self.checks]
        for i, s in enumerate(self.steps):
            what = {"launch": f"launch {self.kernels[s.op]['name']}" if s.op in self.kernels else "launch",
                    "library_call": f"library_call {s.provider}.{s.op}"}.get(s.kind, f"{s.kind} {s.op}")
            args = ", ".join(f"%{v}" for v in s.inputs)
            lines.append(f"  {i}: {', '.join(dims(v) for v in s.outputs)} = {what}({args})")
        lines.append(f"  return {', '.join(f'%{v}' for v in self.outputs)}")
        lines.append(f"  arena: {len(self.buffers)} buffers; kernels: {len(self.kernels)}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ blobs
    def add_blob(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        self.blobs[key] = data
        return key

    # ------------------------------------------------------------------ (de)serialisation
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("blobs")
        d["format"] = FORMAT_VERSION
        d["meta"] = dict(self.meta, blobs=sorted(self.blobs))
        return d

    def content_hash(self) -> str:
        """sha256 over the JSON body (blobs enter through their own hashes, listed in it)."""
        body = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(body).hexdigest()

    def save(self, path: str | os.PathLike) -> str:
        """Write the artifact directory ``path``; returns its content hash."""
        os.makedirs(os.path.join(path, "blobs"), exist_ok=True)
        for key, data in self.blobs.items():
            with open(os.path.join(path, "blobs", key), "wb") as f:
                f.write(data)
        body = self.to_json()
        digest = self.content_hash()
        body["meta"]["content_hash"] = digest
        tmp = os.path.join(path, "program.json.tmp")
        with open(tmp, "w") as f:
            json.dump(body, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(path, "program.json"))  # readers never see half a file
        return digest

    @classmethod
    def load(cls, path: str | os.PathLike, expect: dict[str, Any] | None = None) -> Program:
        """Read an artifact. ``expect`` (default: ``environment()`` of this process) is compared
        with the artifact's metadata; any difference is refused, naming each one."""
        file = os.path.join(path, "program.json")
        body = read_versioned_json(file, "Blade program artifact", FORMAT_VERSION)
        meta = body["meta"]
        check_environment(meta, environment() if expect is None else expect, where=str(path))
        blobs = {}
        for key in meta.get("blobs", []):
            with open(os.path.join(path, "blobs", key), "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() != key:
                raise ProgramFormatError(f"{path}: blob {key[:12]}... does not match its hash (corrupt artifact)")
            blobs[key] = data
        meta = {k: v for k, v in meta.items() if k not in ("blobs", "content_hash")}
        prog = cls(
            symbols=body["symbols"], bindings=body["bindings"], input_names=body["input_names"],
            shape_code=body["shape_code"], nslots=body["nslots"], checks=body["checks"],
            values=[Value(**v) for v in body["values"]], buffers=[Buffer(**b) for b in body["buffers"]],
            steps=[Step(**s) for s in body["steps"]], outputs=body["outputs"], kernels=body["kernels"],
            weights=body["weights"], device_symbols=body["device_symbols"], slot_text=body["slot_text"], meta=meta,
            blobs=blobs)
        stored = body["meta"].get("content_hash")
        if stored is not None and stored != prog.content_hash():
            raise ProgramFormatError(f"{file}: content hash {stored[:12]}... does not match the file's content "
                                     "(edited or corrupt artifact)")
        return prog


# ---------------------------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------------------------

#: metadata keys that must equal the loading environment's (GPU arch only when the artifact has one)
CHECKED_KEYS = ("blade", "torch", "triton", "gpu_arch")


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def read_versioned_json(file: str, what: str, version: int) -> dict[str, Any]:
    """A JSON file of an artifact, refused (naming the file) when unreadable or of another format."""
    try:
        with open(file) as f:
            body = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ProgramFormatError(f"{file}: not a {what} ({e})") from e
    if body.get("format") != version:
        raise ProgramFormatError(f"{file}: {what} format {body.get('format')!r}, this Blade reads format "
                                 f"{version}; recompile the model with this Blade")
    return body


def environment(gpu_arch: str | None = None) -> dict[str, Any]:
    """What an artifact records about the process that made it (and is compared with on load);
    ``gpu_arch`` defaults to the current CUDA device's (``sm_90``), None without one."""
    import torch

    if gpu_arch is None and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        gpu_arch = f"sm_{major}{minor}"
    return {"blade": _version("blade"), "torch": torch.__version__.split("+")[0], "triton": _version("triton"),
            "gpu_arch": gpu_arch}


def check_environment(meta: dict[str, Any], env: dict[str, Any], where: str = "artifact") -> None:
    diffs = []
    for key in CHECKED_KEYS:
        have, want = meta.get(key), env.get(key)
        if key == "gpu_arch" and (have is None or want is None):
            continue  # a host artifact runs anywhere the host provider does; the device sets the arch
        if have != want:
            diffs.append(f"{key}: artifact {have!r}, this process {want!r}")
    if diffs:
        raise ProgramFormatError(f"{where} was compiled for another environment ({'; '.join(diffs)}); "
                                 "recompile the model here or load it where it was compiled")
