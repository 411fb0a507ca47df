"""The ``blade`` tensor dialect: every op and attribute, registered once.

The op classes live by family in ``elementwise.py``, ``structured.py``, ``data_movement.py`` and
``program.py``, ``kernel.py``; this file only assembles them.
"""

from xdsl.ir import Dialect

from blade.dialects.data_movement import DATA_MOVEMENT_OPS
from blade.dialects.elementwise import ELEMENTWISE_OPS
from blade.dialects.kernel import FusedOp
from blade.dialects.program import PROGRAM_OPS
from blade.dialects.structured import STRUCTURED_OPS
from blade.dialects.types import DimsAttr, TensorType

ALL_OPS = [*ELEMENTWISE_OPS, *STRUCTURED_OPS, *DATA_MOVEMENT_OPS, *PROGRAM_OPS, FusedOp]
OPS_BY_NAME = {op.name: op for op in ALL_OPS}
BLADE = Dialect("blade", ALL_OPS, [TensorType, DimsAttr])
