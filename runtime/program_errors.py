"""The errors of running a Program (``runtime/program_executor.py`` and the modules it uses)."""


class ProgramShapeError(ValueError):
    """The inputs' sizes do not fit the Program (a dim, a range or a guard)."""


class ProgramRunError(RuntimeError):
    """A step failed, or needs something this executor does not do (yet)."""
