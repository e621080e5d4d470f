"""Source positions of libcst nodes, computed only for files that produced a report.

libcst's PositionProvider records positions through a generator-based context manager and two
dataclass objects per node; on a 10k-line file that costs more than parsing it. This codegen
state records the same syntactic ranges as plain tuples with a slotted context manager, which
measured about 3x faster. Ranges are (start line, start column, end line, end column), lines
1-based, columns 0-based, as libcst's.
"""

from __future__ import annotations

from types import TracebackType

import libcst as cst
from libcst._nodes.internal import CodegenState

Range = tuple[int, int, int, int]


class _Recorder:
    __slots__ = ("end_node", "node", "start", "start_node", "state")

    def __init__(
        self,
        state: _PositionState,
        node: cst.CSTNode,
        start_node: cst.CSTNode | None,
        end_node: cst.CSTNode | None,
    ) -> None:
        self.state = state
        self.node = node
        self.start_node = start_node
        self.end_node = end_node
        self.start = (0, 0)

    def __enter__(self) -> None:
        self.start = (self.state.line, self.state.column)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        ranges = self.state.ranges
        start_line, start_column = self.start
        end_line, end_column = self.state.line, self.state.column
        if self.start_node is not None:
            start_line, start_column = ranges[self.start_node][:2]
        if self.end_node is not None:
            end_line, end_column = ranges[self.end_node][2:]
        ranges[self.node] = (start_line, start_column, end_line, end_column)


class _PositionState(CodegenState):
    def __init__(self, module: cst.Module) -> None:
        super().__init__(
            default_indent=module.default_indent, default_newline=module.default_newline
        )
        self.line = 1
        self.column = 0
        self.ranges: dict[cst.CSTNode, Range] = {}
        self._stack: list[tuple[int, int]] = []

    def add_indent_tokens(self) -> None:
        for token in self.indent_tokens:
            self.add_token(token)

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        newlines = value.count("\n")
        if newlines:
            self.line += newlines
            self.column = len(value) - value.rfind("\n") - 1
        else:
            self.column += len(value)

    def before_codegen(self, node: cst.CSTNode) -> None:
        self._stack.append((self.line, self.column))

    def after_codegen(self, node: cst.CSTNode) -> None:
        start_line, start_column = self._stack.pop()
        if node not in self.ranges:  # a syntactic range recorded inside wins
            self.ranges[node] = (start_line, start_column, self.line, self.column)

    def record_syntactic_position(  # type: ignore[override]
        self,
        node: cst.CSTNode,
        *,
        start_node: cst.CSTNode | None = None,
        end_node: cst.CSTNode | None = None,
    ) -> _Recorder:
        return _Recorder(self, node, start_node, end_node)


def node_ranges(module: cst.Module) -> dict[cst.CSTNode, Range]:
    """Syntactic ranges of every node of `module` (the same as libcst's PositionProvider)."""
    state = _PositionState(module)
    module._codegen(state)
    return state.ranges
