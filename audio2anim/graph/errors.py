"""Errors the graph reports to users: one line, naming the file, node and field at fault."""


class GraphError(Exception):
    """A graph that cannot run: bad file, unknown op, bad parameter, bad wiring."""


class OperatorError(Exception):
    """An operator failed while the graph ran; ``node`` names it."""

    def __init__(self, node: str, cause: BaseException) -> None:
        self.node = node
        self.cause = cause
        self.report = None  # the run's RunReport, attached by the runner
        super().__init__(f"node '{node}' failed: {type(cause).__name__}: {cause}")
