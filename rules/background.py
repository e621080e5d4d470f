"""Background work rules (skill section "Pattern: Background Tasks")."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import libcst as cst

from bot.findings import Severity
from bot.flow import FlowGraph, FlowNode
from bot.rule import Invalid, Rule, Valid
from bot.semantics import ScopeKind
from rules._shared import own_nodes, spawns_task

SECTION = "Pattern: Background Tasks"


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
        if isinstance(node.value, cst.Call) and spawns_task(self.semantics, node.value):
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
            or not spawns_task(self.semantics, value)
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


# ---------------------------------------------------------------------- AG502
# Receivers whose sends ARE the response: a websocket, a streaming or SSE response.
CHANNEL_WORDS = ("websocket", "socket", "ws", "response", "stream", "sse", "channel")
# Argument names that are a websocket themselves (`await send_json(websocket, data)`).
SOCKET_NAMES = frozenset({"websocket", "ws", "socket"})
CHANNEL_TYPE_WORDS = ("WebSocket", "Response", "Stream", "EventSource", "Send")
# Names that match a pattern (`*email*`) but read or check something the response depends on.
NOT_SIDE_EFFECT_VERBS = frozenset(
    {
        "get", "fetch", "load", "read", "list", "find", "search", "lookup", "count", "validate",
        "verify", "check", "is", "has", "parse", "render", "build", "format", "generate",
        "compose", "prepare",
    }
)  # fmt: skip


@dataclass
class SideEffect:
    node: cst.Call
    small: cst.BaseSmallStatement
    await_node: cst.Await
    target: str | None
    statement: cst.CSTNode | None


@dataclass
class EndpointState:
    node: cst.FunctionDef
    scope: str
    effects: list[SideEffect] = field(default_factory=list)


class AwaitedSideEffect(Rule):
    CODE = "AG502"
    NAME = "awaited-side-effect"
    SEVERITY = Severity.INFO
    SECTION = SECTION
    SUMMARY = "An endpoint awaits a slow side effect (email, webhook, ...) before it responds."
    DOC = """
    ## What it does
    In a FastAPI endpoint, flags an awaited call whose name matches the configured side-effect
    patterns (by default `send_*`, `*email*`, `*notify*`, `*analytics*`, `*webhook*`; config
    key `side-effect-patterns`) when the endpoint still has work after it, or returns
    something other than the call's result.

    It leaves alone calls whose result the endpoint goes on to use, calls guarded by an
    `except` that turns their failure into an error response, calls that receive the database
    session, and sends on a websocket, a streaming response or an SSE channel (those sends are
    the response itself); `@router.websocket` endpoints are skipped.

    ## Why is this bad?
    The client waits for the email server, the webhook receiver or the analytics service before
    it gets its response, and a failure there turns a request that did its job into an error.
    Work the response does not depend on can run after the response is sent.

    ## Example
    ```python
    @router.post("/signup")
    async def signup(body: SignupIn) -> UserOut:
        user = await create_user(body)
        await send_welcome_email(user.email)
        return UserOut.model_validate(user)
    ```

    ## Use instead
    ```python
    @router.post("/signup")
    async def signup(body: SignupIn, background_tasks: BackgroundTasks) -> UserOut:
        user = await create_user(body)
        background_tasks.add_task(send_welcome_email, user.email)
        return UserOut.model_validate(user)
    ```
    Pass plain values (ids, addresses) to the task, not the request's session or ORM objects
    (see AG104). Long or must-not-be-lost jobs belong on a task queue.
    """
    TOKENS = (("await",), ("get(", "post(", "put(", "patch(", "delete(", "api_route(", "head("))
    NEEDS = frozenset({"repo-index"})

    VALID = (
        Valid(
            """
            @router.post("/signup")
            async def signup(body: SignupIn, background_tasks: BackgroundTasks):
                user = await create_user(body)
                background_tasks.add_task(send_welcome_email, user.email)
                return {"id": user.id}
            """
        ),
        Valid(
            """
            @router.post("/sms")
            async def sms(body: SmsIn):
                receipt = await send_sms(body.phone, body.text)
                return {"sid": receipt.sid}
            """
        ),
        Valid(
            """
            @router.post("/notify")
            async def notify(body: NotifyIn):
                return await notify_subscribers(body.topic)
            """
        ),
        Valid(
            """
            from fastapi import WebSocket

            @router.websocket("/ws")
            async def chat(websocket: WebSocket):
                await websocket.accept()
                await websocket.send_json({"hello": "world"})
                await websocket.close()
            """
        ),
        Valid(
            """
            from fastapi import WebSocket

            @router.get("/relay")
            async def relay(socket: WebSocket):
                await socket.send_text("ready")
                return None
            """
        ),
        Valid(
            """
            @router.get("/users/{user_id}")
            async def read_user(user_id: int):
                user = await load_user(user_id)
                return user
            """
        ),
        Valid(
            """
            @router.post("/invite")
            async def invite(body: InviteIn):
                try:
                    await send_invite_email(body.email)
                except SMTPError:
                    raise HTTPException(502, "could not send the invitation")
                return {"sent": True}
            """
        ),
        Valid(
            """
            @router.post("/ping")
            async def ping(body: PingIn):
                record = await save(body)
                await send_ping(record.id)
            """
        ),
        Valid(
            """
            from fastapi import Depends
            from sqlalchemy.ext.asyncio import AsyncSession

            @router.post("/orders")
            async def order(body: OrderIn, session: AsyncSession = Depends(get_session)):
                await notify_warehouse(session, body.item_id)
                await session.commit()
                return {"ok": True}
            """
        ),
        Valid(
            """
            async def send_report(email: str) -> None:
                await send_email(email)
                await log_sent(email)
            """
        ),
        Valid(
            """
            from sse_starlette import EventSourceResponse

            @router.get("/events")
            async def events(stream: EventSourceResponse):
                await stream.send_event("start")
                return stream
            """
        ),
        Valid(
            """
            @router.post("/verify")
            async def verify(body: VerifyIn):
                await verify_email_token(body.token)
                await validate_email_domain(body.email)
                return {"verified": True}
            """
        ),
        Valid(
            """
            @router.post("/confirm")
            async def confirm(body: ConfirmIn):
                delivered = await send_confirmation(body.email)
                if not delivered:
                    raise HTTPException(502)
                return {"ok": True}
            """
        ),
        Valid(
            """
            @router.post("/digest")
            async def digest(body: DigestIn):
                async def deliver():
                    await send_digest_email(body.email)
                    return True

                return {"queued": await enqueue(deliver)}
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            @router.post("/signup")
            async def signup(body: SignupIn):
                user = await create_user(body)
                await send_welcome_email(user.email)
                return {"id": user.id}
            """,
            line=4,
            message="`send_welcome_email(...)`",
        ),
        Invalid(
            """
            from app.hooks import fire_webhook as hook

            @app.post("/orders")
            async def create_order(body: OrderIn):
                order = await save_order(body)
                await hook("order.created", order.id)
                return order
            """,
            line=6,
            message="`hook(...)`",
        ),
        Invalid(
            """
            from typing import Annotated
            from fastapi import Depends

            NotifierDep = Annotated[Notifier, Depends(get_notifier)]

            @router.put("/tasks/{task_id}")
            async def update_task(task_id: int, notifier: NotifierDep):
                result = await notifier.notify_assignee(task_id)
                return {"task_id": task_id}
            """,
            line=8,
            message="BackgroundTasks",
        ),
        Invalid(
            """
            class Views:
                @router.delete("/accounts/{account_id}")
                async def delete_account(self, account_id: int):
                    await self.analytics.track_analytics_event("deleted", account_id)
                    await self.repo.delete(account_id)
            """,
            line=4,
        ),
        Invalid(
            """
            @router.post("/events")
            async def record(event: EventIn):
                await notify_subscribers(event)
                return {"recorded": True}
            """,
            line=3,
        ),
        Invalid(
            """
            @router.post("/bulk")
            async def bulk(body: BulkIn):
                for address in body.addresses:
                    await send_newsletter(address)
            """,
            line=4,
        ),
        Invalid(
            """
            @router.post("/contact")
            async def contact(body: ContactIn):
                try:
                    await email_support_team(body.message)
                except Exception:
                    logger.exception("support email failed")
                return {"received": True}
            """,
            line=4,
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._endpoints: list[EndpointState | None] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        semantics = self.semantics
        is_endpoint = (
            node.asynchronous is not None
            and semantics.is_endpoint(node)
            and not _is_websocket_route(node)
        )
        self._endpoints.append(
            EndpointState(node, semantics.scope.qualname) if is_endpoint else None
        )

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        state = self._endpoints.pop()
        if state is not None and state.effects:
            self._check_endpoint(state)

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        state = self._endpoints[-1] if self._endpoints else None
        scope = self.semantics.function_scope()
        if state is None or scope is None or scope.node is not state.node:
            return
        for small in node.body:
            effect = self._side_effect(small, node)
            if effect is not None:
                state.effects.append(effect)

    def _side_effect(
        self, small: cst.BaseSmallStatement, statement: cst.SimpleStatementLine
    ) -> SideEffect | None:
        target: str | None = None
        value: cst.BaseExpression | None
        if isinstance(small, cst.Expr):
            value = small.value
        elif (
            isinstance(small, cst.Assign)
            and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
        ):
            value, target = small.value, small.targets[0].target.value
        elif isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name):
            value, target = small.value, small.target.value
        else:
            return None
        if not isinstance(value, cst.Await) or not isinstance(value.expression, cst.Call):
            return None
        call = value.expression
        func = call.func
        if isinstance(func, cst.Name):
            name, receiver = func.value, None
        elif isinstance(func, cst.Attribute):
            name, receiver = func.attr.value, func.value
        else:
            return None
        # The spelled name and, for an alias (`import fire_webhook as hook`), the real one.
        names = {name.lower()}
        qualname = self.semantics.qualified_name(func)
        if qualname is not None:
            names.add(qualname.rsplit(".", 1)[-1].lower())
        patterns = self.context.options.side_effect_patterns
        if not any(fnmatch.fnmatchcase(n, p.lower()) for n in names for p in patterns):
            return None
        if name.lstrip("_").split("_", 1)[0].lower() in NOT_SIDE_EFFECT_VERBS:
            return None  # `validate_email`, `get_email`: part of answering, not a side effect
        if receiver is not None and (
            self._is_channel(receiver) or self.semantics.session_binding(receiver) is not None
        ):
            return None
        for arg in call.args:
            if self._is_channel(arg.value, by_name=SOCKET_NAMES) or self.semantics.session_binding(
                arg.value
            ):
                return None
        return SideEffect(call, small, value, target, statement)

    def _is_channel(self, expr: cst.BaseExpression, by_name: frozenset[str] | None = None) -> bool:
        """A websocket, streaming response or SSE channel (or something reached through one):
        by its parameter type, or by its name (`by_name`: exact names; default: name words)."""
        root = expr
        while isinstance(root, (cst.Attribute, cst.Subscript, cst.Call)):
            root = root.func if isinstance(root, cst.Call) else root.value
        if not isinstance(root, cst.Name):
            return False
        name = root.value.lower()
        if by_name is not None:
            if name in by_name:
                return True
        elif any(
            word == name or name.startswith(word + "_") or name.endswith("_" + word)
            for word in CHANNEL_WORDS
        ):
            return True
        binding = self.semantics.lookup(root.value)
        node = binding.node if binding is not None else None
        if isinstance(node, cst.Param) and node.annotation is not None:
            text = self.context.module.code_for_node(node.annotation.annotation)
            return any(word in text for word in CHANNEL_TYPE_WORDS)
        return False

    def _check_endpoint(self, state: EndpointState) -> None:
        function = state.node
        graph = self.semantics.flow(function)
        counts = self.semantics.name_counts_in(function)
        guarded = _guarded_by_raising_handler(function)
        for effect in state.effects:
            if effect.target is not None and counts[effect.target] > 1:
                continue  # the endpoint uses the result
            if id(effect.node) in guarded:
                continue  # a failure becomes the response: the call is part of the answer
            node = graph.node_for(effect.small)
            if node is None or not _work_after(graph, node):
                continue
            callee = self.context.module.code_for_node(effect.node.func)
            self.report(
                effect.node,
                f"`{callee}(...)` is awaited before the response is sent, so the client waits "
                "for this side effect (and gets an error if it fails); hand it to "
                f"`BackgroundTasks` (`background_tasks.add_task({callee}, ...)`) to run after "
                "the response",
                statement=effect.statement,
                scope=state.scope,
            )


def _is_websocket_route(function: cst.FunctionDef) -> bool:
    return any(
        isinstance(d.decorator, cst.Call)
        and isinstance(d.decorator.func, cst.Attribute)
        and d.decorator.func.attr.value in ("websocket", "websocket_route")
        for d in function.decorators
    )


def _guarded_by_raising_handler(function: cst.FunctionDef) -> set[int]:
    """Calls inside a `try` body whose `except` raises (the failure is turned into a response)."""
    guarded: set[int] = set()
    for node in own_nodes(function.body):
        if not isinstance(node, (cst.Try, cst.TryStar)):
            continue
        if not any(
            isinstance(inner, cst.Raise)
            for handler in node.handlers
            for inner in own_nodes(handler.body)
        ):
            continue
        guarded.update(id(inner) for inner in own_nodes(node.body) if isinstance(inner, cst.Call))
    return guarded


def _work_after(graph: FlowGraph, start: FlowNode) -> bool:
    """Whether a statement runs after `start` on the normal (non-exception) path."""
    seen = {start.index}
    pending = [start]
    while pending:
        current = pending.pop()
        for successor, _ in graph.successors(current):
            if successor.index in seen or successor.kind == "except":
                continue
            seen.add(successor.index)
            if successor.node is not None:
                return True
            pending.append(successor)
    return False
