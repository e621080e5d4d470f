"""Background work rules (skill section "Pattern: Background Tasks")."""

from __future__ import annotations

import libcst as cst

from bot.findings import Severity
from bot.rule import Invalid, Rule, Valid
from bot.semantics import ScopeKind

SECTION = "Pattern: Background Tasks"

TASK_SPAWNERS = frozenset(
    {
        "asyncio.create_task",
        "asyncio.ensure_future",
        "asyncio.tasks.create_task",
        "asyncio.tasks.ensure_future",
    }
)
LOOP_GETTERS = frozenset(
    {"asyncio.get_event_loop", "asyncio.get_running_loop", "asyncio.new_event_loop"}
)
LOOP_NAMES = frozenset({"loop", "event_loop"})


class UnreferencedTask(Rule):
    CODE = "AG501"
    NAME = "unreferenced-task"
    SEVERITY = Severity.WARNING
    SECTION = SECTION
    SUMMARY = (
        "A task from `create_task`/`ensure_future` is not kept, so it can vanish with its error."
    )
    DOC = """
    ## What it does
    Flags `asyncio.create_task(...)`, `asyncio.ensure_future(...)` and `loop.create_task(...)`
    whose task is thrown away: the call is a bare statement, its result is assigned to `_`, or
    it is kept in a local variable that the function never reads again (never awaited, stored,
    returned, passed on or given a done-callback).

    ## Why is this bad?
    The event loop holds only a weak reference to a task. A task nothing else refers to can be
    garbage-collected before it finishes ("Task was destroyed but it is pending!"), and when it
    fails, its exception is only logged when the task object is freed ("Task exception was
    never retrieved"), long after the request that started it. Keeping the task in a local that
    goes out of scope at the end of the function is no better than discarding it.

    ## Example
    ```python
    @router.post("/orders")
    async def create_order(order: OrderIn) -> OrderOut:
        saved = await save(order)
        asyncio.create_task(send_receipt(saved.id))
        return saved
    ```

    ## Use instead
    For work that belongs to a request, FastAPI's `BackgroundTasks`:
    ```python
    @router.post("/orders")
    async def create_order(order: OrderIn, background: BackgroundTasks) -> OrderOut:
        saved = await save(order)
        background.add_task(send_receipt, saved.id)
        return saved
    ```
    Elsewhere, an `asyncio.TaskGroup`, or a strong reference plus a done-callback that reads the
    task's exception:
    ```python
    running: set[asyncio.Task[None]] = set()

    task = asyncio.create_task(refresh_cache())
    running.add(task)
    task.add_done_callback(running.discard)
    ```
    """
    CORRECTION = """
    The skill's "fire and forget" example throws the task away. Python's documentation requires
    a strong reference to every task (a set plus `add_done_callback(set.discard)`, or an
    `asyncio.TaskGroup`); for work that belongs to a request, FastAPI's `BackgroundTasks` is the
    simpler choice.
    """
    TOKENS = (("create_task", "ensure_future"),)

    VALID = (
        Valid(
            """
            import asyncio

            async def main() -> None:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(worker(1))
                    tg.create_task(worker(2))
            """
        ),
        Valid(
            """
            import asyncio

            background_tasks: set[asyncio.Task[None]] = set()

            def schedule(coro) -> None:
                task = asyncio.create_task(coro)
                background_tasks.add(task)
                task.add_done_callback(background_tasks.discard)
            """
        ),
        Valid(
            """
            import asyncio

            async def fetch_both():
                first = asyncio.create_task(fetch("a"))
                second = asyncio.create_task(fetch("b"))
                return await first, await second
            """
        ),
        Valid(
            """
            import asyncio

            def start() -> asyncio.Task[None]:
                return asyncio.create_task(poll_forever())
            """
        ),
        Valid(
            """
            import asyncio

            async def run_all(jobs):
                tasks = [asyncio.create_task(job()) for job in jobs]
                await asyncio.gather(*tasks)
            """
        ),
        Valid(
            """
            import asyncio

            class Poller:
                def __init__(self) -> None:
                    self._tasks: list[asyncio.Task[None]] = []

                def start(self) -> None:
                    self._tasks.append(asyncio.create_task(self._run()))
            """
        ),
        Valid(
            """
            from fastapi import BackgroundTasks

            @router.post("/signup")
            async def signup(user: UserIn, background: BackgroundTasks) -> dict[str, str]:
                background.add_task(send_welcome_email, user.email)
                return {"status": "ok"}
            """
        ),
        Valid(
            """
            import asyncio

            async def watch(coro):
                task = asyncio.ensure_future(coro)
                task.add_done_callback(log_failure)
            """
        ),
        Valid(
            """
            import asyncio

            _heartbeat = asyncio.ensure_future(heartbeat())
            """
        ),
        Valid(
            """
            import asyncio

            async def later(coro):
                task = asyncio.create_task(coro)

                def cancel() -> None:
                    task.cancel()

                return cancel
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            import asyncio

            async def create_order(order):
                saved = await save(order)
                asyncio.create_task(send_receipt(saved.id))
                return saved
            """,
            line=5,
            message="discarded",
        ),
        Invalid(
            """
            from asyncio import ensure_future as spawn

            async def handler(event):
                spawn(process(event))
            """,
            line=4,
        ),
        Invalid(
            """
            import asyncio as aio

            async def handler(event):
                _ = aio.create_task(process(event))
            """,
            line=4,
            message="`_`",
        ),
        Invalid(
            """
            import asyncio

            async def handler(event):
                task = asyncio.create_task(process(event))
                return {"accepted": True}
            """,
            line=4,
            message="`task`",
        ),
        Invalid(
            """
            import asyncio

            def start_worker():
                loop = asyncio.get_event_loop()
                loop.create_task(worker())
            """,
            line=5,
        ),
        Invalid(
            """
            import asyncio

            async def handler(event):
                def helper():
                    return 1
                asyncio.create_task(process(event, helper()))
            """,
            line=6,
        ),
        Invalid(
            """
            import asyncio

            class Service:
                async def notify(self, user):
                    asyncio.get_running_loop().create_task(self._send(user))
            """,
            line=5,
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Tasks kept in a local: checked when their function ends.
        self._pending: list[tuple[cst.CSTNode, str, cst.Call, cst.CSTNode | None, str]] = []

    def visit_Expr(self, node: cst.Expr) -> None:
        if isinstance(node.value, cst.Call) and self._spawns_task(node.value):
            self._report(node.value, "is discarded")

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1:
            self._check_assignment(node.targets[0].target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._check_assignment(node.target, node.value)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        if not self._pending:
            return
        counts = self.semantics.name_counts_in(node)
        keep = []
        for function, name, call, statement, scope in self._pending:
            if function is not node:
                keep.append((function, name, call, statement, scope))
            elif counts[name] <= 1:  # the only occurrence is the assignment itself
                self._report(
                    call, f"is kept only in `{name}`, which is never used", statement, scope
                )
        self._pending = keep

    def _check_assignment(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        if (
            not isinstance(target, cst.Name)
            or not isinstance(value, cst.Call)
            or not self._spawns_task(value)
        ):
            return
        if target.value == "_":
            self._report(value, "is assigned to `_`")
            return
        scope = self.semantics.scope
        if scope.kind is not ScopeKind.FUNCTION or target.value in scope.declared_global:
            return
        self._pending.append(
            (scope.node, target.value, value, self.context.statement, scope.qualname)
        )

    def _spawns_task(self, call: cst.Call) -> bool:
        qualname = self.semantics.qualified_name(call.func)
        if qualname in TASK_SPAWNERS:
            return True
        func = call.func
        return (
            isinstance(func, cst.Attribute)
            and func.attr.value == "create_task"
            and self._is_event_loop(func.value)
        )

    def _is_event_loop(self, expr: cst.BaseExpression) -> bool:
        if isinstance(expr, cst.Call):
            return self.semantics.qualified_name(expr.func) in LOOP_GETTERS
        if (
            isinstance(expr, cst.Attribute)
            and isinstance(expr.value, cst.Name)
            and expr.value.value == "self"
        ):
            return expr.attr.value.lstrip("_") in LOOP_NAMES
        if isinstance(expr, cst.Name):
            binding = self.semantics.lookup(expr.value)
            if binding is not None and isinstance(binding.value, cst.Call):
                return self.semantics.qualified_name(binding.value.func) in LOOP_GETTERS
            # A parameter or name called `loop` with no other known meaning.
            return expr.value in LOOP_NAMES and (binding is None or binding.value is None)
        return False

    def _report(
        self,
        call: cst.Call,
        how: str,
        statement: cst.CSTNode | None = None,
        scope: str | None = None,
    ) -> None:
        spawner = self.context.module.code_for_node(call.func)
        self.report(
            call,
            f"the task from `{spawner}(...)` {how}: the event loop keeps only a weak reference, "
            'so it can vanish mid-run and its exception is lost ("Task exception was never '
            'retrieved"); keep a reference, or use a TaskGroup or BackgroundTasks',
            statement=statement,
            scope=scope,
        )
