"""The statement-level control-flow graph and the forward solver."""

from __future__ import annotations

import textwrap

import libcst as cst

from bot.flow import Condition, FlowNode, ForwardAnalysis, build_graph, own_expressions
from bot.walker import iter_descendants


def _function(source: str) -> cst.FunctionDef:
    module = cst.parse_module(textwrap.dedent(source))
    function = module.body[0]
    assert isinstance(function, cst.FunctionDef)
    return function


def _calls(node: FlowNode) -> set[str]:
    names = set()
    for part in own_expressions(node):
        for child in iter_descendants(part):
            if isinstance(child, cst.Call) and isinstance(child.func, cst.Name):
                names.add(child.func.value)
    return names


def _events_before(source: str, marker: str, must: bool = False) -> frozenset[str] | None:
    """Which of commit()/refresh() happened before the call `marker()` (may or must)."""
    function = _function(source)
    graph = build_graph(function)

    def transfer(node: FlowNode, facts: frozenset[str]) -> frozenset[str]:
        calls = _calls(node)
        if "refresh" in calls:
            facts = facts - {"commit"}
        if "commit" in calls:
            facts = facts | {"commit"}
        if "check" in calls:
            facts = facts | {"check"}
        return facts

    def refine(condition: Condition, facts: frozenset[str]) -> frozenset[str]:
        text = cst.Module([]).code_for_node(condition.test)
        return facts | {"guarded"} if text == "ok" and condition.truth else facts

    join = (lambda a, b: a & b) if must else (lambda a, b: a | b)
    analysis = ForwardAnalysis(graph, frozenset(), transfer, join, refine)
    for node in graph.nodes:
        if marker in _calls(node):
            return analysis.facts_before(node)
    raise AssertionError("marker not found")


def test_straight_line() -> None:
    assert _events_before("def f():\n    commit()\n    use()\n", "use") == {"commit"}
    assert (
        _events_before("def f():\n    commit()\n    refresh()\n    use()\n", "use") == frozenset()
    )


def test_branches_may_and_must() -> None:
    source = """
    def f(x):
        if x:
            commit()
        use()
    """
    assert _events_before(source, "use") == {"commit"}
    assert _events_before(source, "use", must=True) == frozenset()


def test_early_return_cuts_the_path() -> None:
    source = """
    def f(x):
        if x:
            commit()
            return 1
        use()
    """
    assert _events_before(source, "use") == frozenset()


def test_unreachable_code_has_no_facts() -> None:
    assert _events_before("def f():\n    return 1\n    use()\n", "use") is None


def test_loops_carry_facts_around() -> None:
    source = """
    def f(items):
        for item in items:
            use()
            commit()
    """
    assert _events_before(source, "use") == {"commit"}
    source = """
    def f(items):
        while cond():
            if stop():
                break
            commit()
        use()
    """
    assert _events_before(source, "use") == {"commit"}
    assert _events_before(source, "use", must=True) == frozenset()


def test_try_except_finally() -> None:
    source = """
    def f():
        try:
            commit()
        except Error:
            refresh()
            raise
        use()
    """
    assert _events_before(source, "use") == {"commit"}
    source = """
    def f():
        try:
            work()
        finally:
            commit()
        use()
    """
    assert _events_before(source, "use", must=True) == {"commit"}


def test_branch_conditions_refine_facts() -> None:
    source = """
    def f(ok):
        if ok:
            use()
    """
    assert _events_before(source, "use") == {"guarded"}


def test_nested_functions_are_opaque() -> None:
    source = """
    def f():
        def inner():
            commit()
        use()
    """
    assert _events_before(source, "use") == frozenset()


def test_containing_finds_the_statement_of_an_expression() -> None:
    function = _function("def f(x):\n    if check(x):\n        y = g(x.attr)\n")
    graph = build_graph(function)
    attribute = next(n for n in iter_descendants(function) if isinstance(n, cst.Attribute))
    node = graph.containing(attribute)
    assert node is not None and node.kind == "stmt"
    call = next(n for n in iter_descendants(function) if isinstance(n, cst.Call))
    header = graph.containing(call)
    assert header is not None and header.kind == "if"
