"""Logging rules (skill section "Pattern: Logging Async Operations").

Loggers are found by what their names are bound to, through imports and assignments
(`logging.getLogger(...)`, `structlog.get_logger()`, `log.bind(...)`, a parameter annotated
`logging.Logger`), never by the variable's spelling: a name whose origin cannot be seen is not
treated as a logger.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from bot.findings import FixSafety, Severity
from bot.rule import FixPlan, Invalid, Rule, Valid
from bot.semantics import BindingKind, Scope, ScopeKind
from bot.walker import iter_descendants
from rules._shared import one_line, positional_args

SECTION = "Pattern: Logging Async Operations"

STDLIB = "logging"
STRUCTLOG = "structlog"

# Calls that return a logger, by qualified name, and the library it belongs to.
LOGGER_FACTORIES = {
    "logging.getLogger": STDLIB,
    "logging.LoggerAdapter": STDLIB,
    "structlog.get_logger": STRUCTLOG,
    "structlog.getLogger": STRUCTLOG,
    "structlog.wrap_logger": STRUCTLOG,
    "structlog.stdlib.get_logger": STRUCTLOG,
    "structlog.stdlib.BoundLogger": STRUCTLOG,
}
# Annotations that say a parameter or variable holds a logger.
LOGGER_TYPES = {
    "logging.Logger": STDLIB,
    "logging.LoggerAdapter": STDLIB,
    "structlog.BoundLogger": STRUCTLOG,
    "structlog.stdlib.BoundLogger": STRUCTLOG,
    "structlog.stdlib.AsyncBoundLogger": STRUCTLOG,
    "structlog.typing.FilteringBoundLogger": STRUCTLOG,
    "structlog.types.FilteringBoundLogger": STRUCTLOG,
    "structlog.typing.BindableLogger": STRUCTLOG,
    "structlog.types.BindableLogger": STRUCTLOG,
}
# Logger methods that return another logger of the same library.
DERIVING_METHODS = frozenset({"bind", "new", "unbind", "try_unbind", "getChild", "opt"})
LEVEL_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "msg"}
)
# structlog's async variants (`await log.ainfo(...)`).
ASYNC_LEVEL_METHODS = frozenset(f"a{m}" for m in LEVEL_METHODS)
LOG_METHODS = LEVEL_METHODS | ASYNC_LEVEL_METHODS | {"log", "alog"}
TRACEBACK_FORMATTERS = frozenset(
    {"traceback.format_exc", "traceback.format_exception", "traceback.print_exc"}
)


@dataclass(frozen=True)
class Logger:
    library: str  # STDLIB or STRUCTLOG
    label: str  # how the code spells it: `logger`, `log`, `logging`


class _LoggerResolver:
    """What a receiver is, through imports, assignments (all of them, in order) and annotations.

    The semantic model keeps only a name's latest binding; `log = log.bind(job=job_id)` needs
    the earlier one, so every assignment is kept here per scope.
    """

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.semantics = rule.semantics
        self._assigned: dict[int, dict[str, list[cst.BaseExpression]]] = {}

    def record(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        if isinstance(target, cst.Name):
            names = self._assigned.setdefault(id(self.semantics.scope.node), {})
            names.setdefault(target.value, []).append(value)

    def logger(self, expr: cst.BaseExpression) -> Logger | None:
        library = self._library(expr, {}, 0)
        if library is None:
            return None
        text = one_line(self.rule.context.module, expr)
        return Logger(library, text if len(text) <= 40 else text[:37] + "...")

    def _values(self, name: str) -> list[cst.BaseExpression] | None:
        scope: Scope | None = self.semantics.scope
        start = scope
        while scope is not None:
            if scope is start or scope.kind is not ScopeKind.CLASS:
                values = self._assigned.get(id(scope.node), {}).get(name)
                if values is not None:
                    return values
                if name in scope.bindings:
                    return None  # bound here by something else (a parameter, an import)
            scope = scope.parent
        return None

    def _library(self, expr: cst.BaseExpression, limits: dict[str, int], depth: int) -> str | None:
        if depth > 16:
            return None
        semantics = self.semantics
        if isinstance(expr, cst.Call):
            qualname = semantics.qualified_name(expr.func)
            if qualname in LOGGER_FACTORIES:
                return LOGGER_FACTORIES[qualname]
            func = expr.func
            if isinstance(func, cst.Attribute) and func.attr.value in DERIVING_METHODS:
                return self._library(func.value, limits, depth + 1)
            return None
        if isinstance(expr, cst.Attribute):
            return STDLIB if semantics.qualified_name(expr) == "logging.root" else None
        if not isinstance(expr, cst.Name):
            return None
        name = expr.value
        values = self._values(name)
        if values:
            index = limits.get(name, len(values)) - 1
            if index < 0:
                return None
            found = self._library(values[index], {**limits, name: index}, depth + 1)
            if found is not None or index != len(values) - 1:
                return found
        binding = semantics.lookup(name)
        if binding is None:
            return None
        if binding.kind is BindingKind.IMPORT:
            # The `logging` module itself: `logging.error(...)`.
            return STDLIB if binding.qualname == "logging" else None
        holder = binding.node
        annotation = (
            holder.annotation.annotation
            if isinstance(holder, (cst.Param, cst.AnnAssign)) and holder.annotation is not None
            else None
        )
        if annotation is not None:
            return LOGGER_TYPES.get(semantics.qualified_name(annotation) or "")
        return None


class _LoggerRule(Rule):
    """A rule that needs to know which receivers are loggers (`self._loggers`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._loggers = _LoggerResolver(self)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._loggers.record(target.target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._loggers.record(node.target, node.value)


def _string_literal(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString))


def _interpolates(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, cst.FormattedString):
        return any(isinstance(p, cst.FormattedStringExpression) for p in expr.parts)
    if isinstance(expr, cst.ConcatenatedString):
        return _interpolates(expr.left) or _interpolates(expr.right)
    return False


def _formatting(expr: cst.BaseExpression) -> str | None:
    """How a message is formatted eagerly: an f-string, `%` or `.format()`; None if it is not."""
    if _interpolates(expr):
        return "an f-string"
    if (
        isinstance(expr, cst.BinaryOperation)
        and isinstance(expr.operator, cst.Modulo)
        and _string_literal(expr.left)
    ):
        return "`%` formatting"
    if (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value == "format"
        and _string_literal(expr.func.value)
    ):
        return "`.format()`"
    return None


# ---------------------------------------------------------------------- AG801
def _passes(expr: cst.BaseExpression, name: str) -> bool:
    """`e`, `str(e)`, `repr(e)`, `f"...{e}"`, `"..." % e`, `"{}".format(e)`, `{"error": str(e)}`."""
    if isinstance(expr, cst.Name):
        return expr.value == name
    if isinstance(expr, cst.Call):
        func = expr.func
        if isinstance(func, cst.Name) and func.value in ("str", "repr", "format", "ascii"):
            return bool(expr.args) and _passes(expr.args[0].value, name)
        if isinstance(func, cst.Attribute) and func.attr.value == "format":
            return any(_passes(arg.value, name) for arg in expr.args)
        return False
    if isinstance(expr, cst.FormattedString):
        return any(
            isinstance(part, cst.FormattedStringExpression) and _passes(part.expression, name)
            for part in expr.parts
        )
    if isinstance(expr, cst.ConcatenatedString):
        return _passes(expr.left, name) or _passes(expr.right, name)
    if isinstance(expr, cst.BinaryOperation):
        return _passes(expr.left, name) or _passes(expr.right, name)
    if isinstance(expr, (cst.Tuple, cst.List)):
        return any(_passes(element.value, name) for element in expr.elements)
    if isinstance(expr, cst.Dict):
        return any(
            isinstance(element, cst.DictElement) and _passes(element.value, name)
            for element in expr.elements
        )
    return False


@dataclass(frozen=True)
class _Handler:
    node: cst.ExceptHandler | cst.ExceptStarHandler
    name: str | None  # `except E as name`
    scope: int  # id of the function (or module) the handler is in


class ErrorLogWithoutTraceback(_LoggerRule):
    CODE = "AG801"
    NAME = "error-log-without-traceback"
    SEVERITY = Severity.WARNING
    SECTION = SECTION
    SUMMARY = "`logger.error(...)` in an `except` block logs the exception but not its traceback."
    DOC = """
    ## What it does
    Flags `logger.error(...)` inside an `except` block when it passes the caught exception (as
    an argument, `str(e)`, `repr(e)`, inside an f-string, as a lazy `"%s", e` argument or as a
    key-value such as `error=str(e)`) without `exc_info=`. Only stdlib `logging` and `structlog`
    loggers count, found through imports and assignments (`logging.getLogger(...)`,
    `structlog.get_logger()`, `log.bind(...)`, the `logging.error` function, a parameter
    annotated `logging.Logger`); a name whose origin is unknown is left alone.

    ## Why is this bad?
    The log line keeps the exception's message and drops its stack trace, the one thing that
    says where an async failure started: deep in a driver call, a callback or another task.
    Messages such as "connection was closed in the middle of operation" are useless without it,
    and once the exception is swallowed or replaced nothing else records it.

    ## Example
    ```python
    log = structlog.get_logger()

    async def charge(order_id: int) -> None:
        try:
            await gateway.charge(order_id)
        except GatewayError as e:
            log.error("charge.failed", order_id=order_id, error=str(e))
            raise
    ```

    ## Use instead
    ```python
    async def charge(order_id: int) -> None:
        try:
            await gateway.charge(order_id)
        except GatewayError:
            log.exception("charge.failed", order_id=order_id)
            raise
    ```
    `exception()` logs at error level and attaches the traceback; `exc_info=True` does the same
    for any level.

    ## Fix safety
    Replacing `.error(` with `.exception(` is safe when the call sits in the `except` block of
    the exception it logs: only the traceback is added to the record. When it logs an outer
    exception from inside a nested handler, the fix is unsafe, because `exception()` would
    attach the traceback of the inner exception being handled.
    """
    TOKENS = (("error(",), ("except",), ("logging", "structlog"))

    VALID = (
        Valid(
            """
            import logging

            logger = logging.getLogger(__name__)

            async def sync_orders() -> None:
                try:
                    await pull()
                except Exception:
                    logger.exception("sync failed")
            """
        ),
        Valid(
            """
            import logging

            logger = logging.getLogger(__name__)

            def load(path):
                try:
                    return read(path)
                except OSError as e:
                    logger.error("cannot read %s: %s", path, e, exc_info=True)
            """
        ),
        Valid(
            """
            import structlog

            log = structlog.get_logger()

            async def charge(order_id):
                try:
                    await gateway.charge(order_id)
                except GatewayError as e:
                    log.error("charge.failed", order_id=order_id, exc_info=e)
                    raise
            """
        ),
        Valid(
            """
            import logging

            logger = logging.getLogger(__name__)

            def check(value, error):
                logger.error("invalid value %s: %s", value, error)
            """
        ),
        Valid(
            """
            # `logger` is a parameter of unknown type: not known to be a logger.
            async def run(job, logger):
                try:
                    await job()
                except Exception as e:
                    logger.error(f"job failed: {e}")
            """
        ),
        Valid(
            """
            # Imported from a module we cannot see.
            import logging
            from app.observability import logger

            async def run(job):
                try:
                    await job()
                except Exception as e:
                    logger.error("job failed: %s", e)
            """
        ),
        Valid(
            """
            import logging

            logger = logging.getLogger(__name__)

            async def run(job):
                try:
                    await job()
                except TimeoutError:
                    logger.error("job timed out")
            """
        ),
        Valid(
            """
            import logging

            logger = logging.getLogger(__name__)

            async def run(job):
                try:
                    await job()
                except Exception as e:
                    def report() -> None:
                        logger.error("job failed: %s", e)
                    schedule(report)
            """
        ),
        Valid(
            """
            import logging
            import traceback

            logger = logging.getLogger(__name__)

            def run(job):
                try:
                    job()
                except Exception as e:
                    logger.error("job failed: %s\\n%s", e, traceback.format_exc())
            """
        ),
        Valid(
            """
            import logging

            class Worker:
                def __init__(self) -> None:
                    self.logger = logging.getLogger("worker")

                async def run(self, job):
                    try:
                        await job()
                    except Exception as e:
                        self.logger.error("job failed: %s", e)
            """
        ),
        Valid(
            """
            import structlog

            log = structlog.get_logger()

            async def call(client):
                try:
                    return await client.get("/health")
                except HTTPStatusError as e:
                    log.error("upstream.status", status=e.response.status_code)
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            import logging

            logger = logging.getLogger(__name__)

            async def sync_orders() -> None:
                try:
                    await pull()
                except Exception as e:
                    logger.error(f"sync failed: {e}")
            """,
            line=9,
            message="`logger.error(...)`",
            fixed="""
            import logging

            logger = logging.getLogger(__name__)

            async def sync_orders() -> None:
                try:
                    await pull()
                except Exception as e:
                    logger.exception(f"sync failed: {e}")
            """,
        ),
        Invalid(
            """
            import structlog

            log = structlog.get_logger()

            async def charge(order_id: int) -> None:
                try:
                    await gateway.charge(order_id)
                except GatewayError as exc:
                    log.error("charge.failed", order_id=order_id, error=str(exc))
                    raise
            """,
            line=9,
            message="`exc`",
            fixed="""
            import structlog

            log = structlog.get_logger()

            async def charge(order_id: int) -> None:
                try:
                    await gateway.charge(order_id)
                except GatewayError as exc:
                    log.exception("charge.failed", order_id=order_id, error=str(exc))
                    raise
            """,
        ),
        Invalid(
            """
            from logging import getLogger as gl

            std = gl("app")

            def parse(raw):
                try:
                    return int(raw)
                except ValueError as err:
                    std.error("bad value %s", err)
            """,
            line=9,
            message="`std.error(...)`",
        ),
        Invalid(
            """
            import logging

            def parse(raw):
                try:
                    return int(raw)
                except (TypeError, ValueError) as e:
                    logging.error("cannot parse: %r", repr(e))
            """,
            line=7,
            fixed="""
            import logging

            def parse(raw):
                try:
                    return int(raw)
                except (TypeError, ValueError) as e:
                    logging.exception("cannot parse: %r", repr(e))
            """,
        ),
        Invalid(
            """
            import structlog

            async def run_job(job_id: int) -> None:
                log = structlog.stdlib.get_logger()
                log = log.bind(job_id=job_id)
                try:
                    await execute(job_id)
                except Exception as e:
                    if should_alert(e):
                        log.error("job.failed", error=e)
            """,
            line=10,
            message="`log.exception(...)`",
        ),
        Invalid(
            """
            import logging

            class Importer:
                async def run(self, rows, logger: logging.Logger) -> None:
                    for row in rows:
                        try:
                            await self.save(row)
                        except KeyError as missing:
                            logger.error("row %s lacks %s", row, missing)
            """,
            line=9,
        ),
        Invalid(
            """
            import logging

            logger = logging.getLogger(__name__)

            async def run(job):
                try:
                    await job()
                except Exception as outer:
                    try:
                        await rollback()
                    except Exception:
                        logger.error("job failed: {}".format(outer))
            """,
            line=12,
            message="`outer`",
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._handlers: list[_Handler] = []

    def _push(self, node: cst.ExceptHandler | cst.ExceptStarHandler) -> None:
        name = None
        if node.name is not None and isinstance(node.name.name, cst.Name):
            name = node.name.name.value
        self._handlers.append(_Handler(node, name, self._scope_id()))

    def _pop(self, node: cst.ExceptHandler | cst.ExceptStarHandler) -> None:
        self._handlers.pop()

    visit_ExceptHandler = visit_ExceptStarHandler = _push
    leave_ExceptHandler = leave_ExceptStarHandler = _pop

    def _scope_id(self) -> int:
        function = self.semantics.function_scope()
        return id(function.node) if function is not None else 0

    def _enclosing(self) -> Iterator[_Handler]:
        """The handlers around the current node in this function, innermost first."""
        scope = self._scope_id()
        for handler in reversed(self._handlers):
            if handler.scope != scope:
                return
            yield handler

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "error"):
            return
        handlers = list(self._enclosing())
        if not handlers or not any(h.name for h in handlers):
            return
        if any(
            (arg.keyword is not None and arg.keyword.value == "exc_info") or arg.star == "**"
            for arg in node.args
        ):
            return
        if self._formats_traceback(node):
            return
        caught = next(
            (h for h in handlers if h.name and any(_passes(a.value, h.name) for a in node.args)),
            None,
        )
        if caught is None or caught.name is None:
            return
        logger = self._loggers.logger(func.value)
        if logger is None:
            return
        safety = FixSafety.SAFE if caught is handlers[0] else FixSafety.UNSAFE
        self.report(
            node,
            f"`{logger.label}.error(...)` logs the caught `{caught.name}` without its traceback "
            "(no exc_info), so where it failed is lost; use "
            f"`{logger.label}.exception(...)` or pass exc_info=True",
            fix=FixPlan(
                f"Use `{logger.label}.exception(...)`",
                safety,
                replacements=((func.attr, "exception"),),
            ),
        )

    def _formats_traceback(self, call: cst.Call) -> bool:
        """The traceback is in the message already: `traceback.format_exc()`."""
        return any(
            isinstance(node, cst.Call)
            and self.semantics.qualified_name(node.func) in TRACEBACK_FORMATTERS
            for arg in call.args
            for node in iter_descendants(arg.value)
        )


# ---------------------------------------------------------------------- AG802
class FormattedLogEvent(_LoggerRule):
    CODE = "AG802"
    NAME = "formatted-log-event"
    SEVERITY = Severity.INFO
    SECTION = SECTION
    SUMMARY = "An f-string, `%` or `.format()` builds a log message or event in async code."
    DOC = """
    ## What it does
    Flags a stdlib `logging` or `structlog` call inside an `async def` whose message (the
    structlog event) is built eagerly with an f-string, the `%` operator or `str.format()`.
    Loggers are found through imports and assignments, not by their variable names. Constant
    events with key-value data, and stdlib's lazy `logger.info("... %s", value)` form, are fine.

    ## Why is this bad?
    The string is built before the logger checks the level, so the work is done even when the
    record is dropped, on the event loop of every request. Every value also makes a different
    message: log search, grouping and alerting on "the same event" stop working, and values
    that should be fields (ids, counts, durations) are buried in text.

    ## Example
    ```python
    log = structlog.get_logger()

    async def create_user(data: UserIn) -> User:
        user = await users.create(data)
        log.info(f"user {user.id} created in org {data.org_id}")
        return user
    ```

    ## Use instead
    ```python
    async def create_user(data: UserIn) -> User:
        user = await users.create(data)
        log.info("user.created", user_id=user.id, org_id=data.org_id)
        return user
    ```
    With the stdlib, pass the values as arguments: `logger.info("user %s created", user.id)`.
    """
    TOKENS = (
        ("logging", "structlog"),
        ("async def",),
        ('f"', "f'", 'F"', "F'", "%", ".format("),
    )

    VALID = (
        Valid(
            """
            import structlog

            log = structlog.get_logger()

            async def create_user(data):
                user = await users.create(data)
                log.info("user.created", user_id=user.id, org_id=data.org_id)
                return user
            """
        ),
        Valid(
            """
            import logging

            logger = logging.getLogger(__name__)

            async def create_user(data):
                user = await users.create(data)
                logger.info("user %s created in org %s", user.id, data.org_id)
                return user
            """
        ),
        Valid(
            """
            import logging

            logger = logging.getLogger(__name__)

            def create_user(data):
                logger.info(f"creating user {data.email}")
            """
        ),
        Valid(
            """
            # `log` is a parameter of unknown type.
            import logging

            async def step(log, n):
                log.info(f"step {n}")
            """
        ),
        Valid(
            """
            import structlog

            log = structlog.get_logger()

            async def run(items):
                def describe(item) -> None:
                    log.debug(f"item {item}")
                for item in items:
                    describe(item)
                    await handle(item)
            """
        ),
        Valid(
            """
            import structlog

            log = structlog.get_logger()

            async def run(a, b):
                log.info(f"run.started")
                log.info("run.pair", pair=f"{a}-{b}")
            """
        ),
        Valid(
            """
            import logging

            async def report(total):
                print(f"total {total}")
                logging.info("total %d", total)
            """
        ),
        Valid(
            """
            import logging

            class Worker:
                def __init__(self) -> None:
                    self.logger = logging.getLogger("worker")

                async def run(self, n):
                    self.logger.info(f"run {n}")
            """
        ),
        Valid(
            """
            # Imported from a module we cannot see.
            from app.logs import log

            async def run(n):
                log.info(f"run {n}")
            """
        ),
    )
    INVALID = (
        Invalid(
            """
            import structlog

            log = structlog.get_logger()

            async def create_user(data):
                user = await users.create(data)
                log.info(f"user {user.id} created")
                return user
            """,
            line=7,
            message="`log.info(...)`",
        ),
        Invalid(
            """
            import logging

            logger = logging.getLogger(__name__)

            async def retry(attempt: int) -> None:
                logger.warning("retrying, attempt %d" % attempt)
            """,
            line=6,
            message="`%` formatting",
        ),
        Invalid(
            """
            import logging
            import time

            async def timed(job):
                started = time.monotonic()
                await job()
                logging.getLogger(__name__).debug("took {:.2f}s".format(time.monotonic() - started))
            """,
            line=7,
            message=".format()",
        ),
        Invalid(
            """
            import structlog as sl

            class Poller:
                async def poll(self, feed: str) -> None:
                    log = sl.get_logger().bind(feed=feed)
                    items = await fetch(feed)
                    await log.ainfo(f"fetched {len(items)} items")
            """,
            line=7,
        ),
        Invalid(
            """
            import logging
            from logging import getLogger

            std = getLogger("app")

            async def handle(event):
                std.log(logging.INFO, f"handling {event.kind}")
            """,
            line=7,
            message="`std.log(...)`",
        ),
        Invalid(
            """
            import logging

            async def handle(event, logger: logging.Logger):
                logger.error(msg=f"cannot handle {event!r}")
            """,
            line=4,
        ),
    )

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute):
            return
        method = func.attr.value
        if method not in LOG_METHODS:
            return
        if not self.semantics.in_async_function():
            return
        message = self._message(node, method)
        if message is None:
            return
        how = _formatting(message)
        if how is None:
            return
        logger = self._loggers.logger(func.value)
        if logger is None:
            return
        label = f"{logger.label}.{method}"
        if logger.library == STRUCTLOG:
            advice = (
                f'log a constant event with key-value data: `{label}("order.paid", order_id=...)`'
            )
        else:
            advice = f'pass the values as arguments: `{label}("order %s paid", order_id)`'
        self.report(
            node,
            f"`{label}(...)` builds its message with {how} in async code: it is formatted even "
            f"when the level is off, and every value makes a different message, which breaks "
            f"structured search; {advice}",
        )

    @staticmethod
    def _message(call: cst.Call, method: str) -> cst.BaseExpression | None:
        index = 1 if method in ("log", "alog") else 0
        positional = positional_args(call)
        if len(positional) > index:
            return positional[index].value
        for arg in call.args:
            if arg.keyword is not None and arg.keyword.value in ("msg", "event"):
                return arg.value
        return None
