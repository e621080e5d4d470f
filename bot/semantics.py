"""The shared notions every rule asks about: imports, scopes, sessions, factories, endpoints.

One `Semantics` object per file is fed by the engine's single traversal (it sees every scope and
binding node before the rules do) and answers questions such as "what does this name resolve
to", "is this expression an AsyncSession", "which session does this object wrap", "is this
function a FastAPI endpoint". Rules never re-derive any of this.

Precision comes first: when the meaning of a name cannot be established (a name imported from a
file we do not know, a call whose result type is unknown), the answers here are "no" / None.
"""

from __future__ import annotations

import builtins
import enum
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeGuard

import libcst as cst

from bot.facts import RepoFacts
from bot.flow import FlowGraph, build_graph
from bot.walker import iter_descendants

BUILTIN_NAMES = frozenset(dir(builtins))

# Qualified names, after import resolution.
ASYNC_SESSIONMAKER = frozenset(
    {
        "sqlalchemy.ext.asyncio.async_sessionmaker",
        "sqlalchemy.ext.asyncio.session.async_sessionmaker",
    }
)
SESSIONMAKER = frozenset({"sqlalchemy.orm.sessionmaker", "sqlalchemy.orm.session.sessionmaker"})
CREATE_ASYNC_ENGINE = frozenset(
    {
        "sqlalchemy.ext.asyncio.create_async_engine",
        "sqlalchemy.ext.asyncio.engine.create_async_engine",
    }
)
SYNC_SESSION_CLASSES = frozenset(
    {"sqlalchemy.orm.Session", "sqlalchemy.orm.session.Session", "sqlmodel.Session"}
)
CREATE_SYNC_ENGINE = frozenset(
    {"sqlalchemy.create_engine", "sqlalchemy.engine.create_engine", "sqlmodel.create_engine"}
)
ANNOTATED = frozenset({"typing.Annotated", "typing_extensions.Annotated"})
OPTIONAL = frozenset({"typing.Optional", "typing_extensions.Optional"})
UNION = frozenset({"typing.Union", "typing_extensions.Union"})
DEPENDS = frozenset(
    {"fastapi.Depends", "fastapi.params.Depends", "fastapi.param_functions.Depends"}
)
ENDPOINT_METHODS = frozenset(
    {"get", "post", "put", "patch", "delete", "options", "head", "trace", "api_route", "websocket"}
)
LOOP_GETTERS = frozenset(
    {"asyncio.get_event_loop", "asyncio.get_running_loop", "asyncio.new_event_loop"}
)
LOOP_NAMES = frozenset({"loop", "event_loop"})
# Parameter names that mean "the request's session" when the type is unknown but the value is
# injected with Depends(...): the catalogue's fallback.
SESSION_PARAM_NAMES = frozenset({"session", "db", "db_session"})

# The coroutine methods of AsyncSession (SQLAlchemy 2.0 and 2.1, measured by introspection).
SESSION_COROUTINE_METHODS = frozenset(
    {
        "aclose", "close", "close_all", "commit", "connection", "delete", "delete_all", "execute",
        "flush", "get", "get_one", "invalidate", "merge", "merge_all", "refresh", "reset",
        "rollback", "run_sync", "scalar", "scalars", "stream", "stream_scalars",
    }
)  # fmt: skip


# Session methods whose awaited result is a Result, or an ORM instance (value: may be None).
RESULT_METHODS = frozenset({"execute", "stream", "scalars", "stream_scalars"})
INSTANCE_METHODS = {"get": True, "get_one": False, "scalar": True, "merge": False}
# Result methods that give one row's object (value: may be None), and those that keep a Result.
ROW_METHODS = {
    "scalar_one": False, "one": False, "scalar_one_or_none": True, "one_or_none": True,
    "first": True, "scalar": True,
}  # fmt: skip
RESULT_FILTERS = frozenset({"scalars", "unique", "tuples"})


class BindingKind(enum.Enum):
    IMPORT = "import"
    FUNCTION = "function"
    CLASS = "class"
    SESSION = "session"  # an AsyncSession instance
    FACTORY = "factory"  # async_sessionmaker(...) and friends
    SESSION_ALIAS = "session-alias"  # SessionDep = Annotated[AsyncSession, Depends(...)]
    ENGINE = "engine"
    WRAPPER = "wrapper"  # an object built around a session: UserRepository(session)
    CONNECTION = "connection"  # an AsyncConnection
    SYNC_SESSION = "sync-session"  # sqlalchemy.orm.Session(...), sessionmaker(...)()
    SYNC_FACTORY = "sync-factory"  # sessionmaker(...) without class_=AsyncSession
    SYNC_ENGINE = "sync-engine"  # create_engine(...)
    # `await s.execute(...)` / `await s.stream(...)`: a Result of session `origin`
    RESULT = "result"
    ORM = "orm"  # an ORM instance loaded from (or added to) session `origin`
    PARAM = "param"  # a parameter that is none of the above
    OTHER = "other"


@dataclass(eq=False)
class Binding:
    """What a name means at one place. Identity matters: two uses of one session share one
    Binding object, a rebinding makes a new one."""

    kind: BindingKind
    name: str
    node: cst.CSTNode | None = None
    qualname: str | None = None  # imports, module-level functions and classes
    value: cst.BaseExpression | None = None  # the assigned expression, when there is one
    wraps: Binding | None = None  # WRAPPER: the session it was built around
    is_async: bool = False  # FUNCTION: `async def`
    request_scoped: bool = False  # PARAM/SESSION parameters injected with Depends(...)
    origin: Binding | None = None  # RESULT/ORM: the session the object came from
    optional: bool = False  # ORM: the lookup may give None (`get`, `scalar_one_or_none`, ...)
    factory: cst.BaseExpression | None = None  # SESSION: the factory expression it came from
    # FACTORY: its expire_on_commit (True by default, None when not a literal);
    # SESSION: the same for a keyword given to the call that made it (`expire_given`).
    expire_on_commit: bool | None = None
    expire_given: bool = False

    @property
    def session(self) -> Binding | None:
        """The session this name gives access to (itself, or the session it wraps)."""
        if self.kind is BindingKind.SESSION:
            return self
        return self.wraps


class ScopeKind(enum.Enum):
    MODULE = "module"
    CLASS = "class"
    FUNCTION = "function"
    LAMBDA = "lambda"


@dataclass(eq=False)
class Scope:
    kind: ScopeKind
    node: cst.CSTNode
    parent: Scope | None
    qualname: str
    is_async: bool = False
    bindings: dict[str, Binding] = field(default_factory=dict)
    declared_global: set[str] = field(default_factory=set)
    # CLASS scopes: attributes that hold a session (`self.session = session`, `session: AsyncSession`),
    # that hold an object built around one (`self.repo = UserRepository(session)`), or both.
    session_attributes: dict[str, Binding] = field(default_factory=dict)
    wrapper_attributes: dict[str, Binding] = field(default_factory=dict)
    mixed_attributes: set[str] = field(default_factory=set)

    @property
    def is_function(self) -> bool:
        return self.kind in (ScopeKind.FUNCTION, ScopeKind.LAMBDA)

    def enclosing_class(self) -> Scope | None:
        """The class whose method this scope is (for `self.x` lookups)."""
        if self.kind is ScopeKind.FUNCTION and self.parent and self.parent.kind is ScopeKind.CLASS:
            return self.parent
        return None


class Semantics:
    """Per-file semantic model, built incrementally in source order by the engine's traversal."""

    def __init__(
        self, module_name: str, facts: RepoFacts, module: cst.Module | None = None
    ) -> None:
        self.module_name = module_name
        self.facts = facts
        self.module = module or cst.Module(body=[])
        self._dependencies: frozenset[str] | None = None
        self.module_scope = Scope(ScopeKind.MODULE, cst.Module(body=[]), None, "")
        self.scope = self.module_scope
        self.scopes: dict[cst.CSTNode, Scope] = {}
        self._name_counts: dict[int, Counter[str]] = {}
        self._graphs: dict[int, FlowGraph] = {}

    # ------------------------------------------------------------------ traversal hooks
    def enter(self, node: cst.CSTNode) -> None:
        handler = _ENTER.get(type(node))
        if handler is not None:
            handler(self, node)

    def _enter_class(self, node: cst.ClassDef) -> None:
        name = node.name.value
        self._bind(name, Binding(BindingKind.CLASS, name, node, self._qualify(name)))
        self._push(ScopeKind.CLASS, node, name)

    def _enter_lambda(self, node: cst.Lambda) -> None:
        scope = self._push(ScopeKind.LAMBDA, node, "<lambda>")
        for param in parameters(node.params):
            scope.bindings[param.name.value] = Binding(BindingKind.PARAM, param.name.value, param)

    def _bind_assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._bind_target(target.target, node.value, node)

    def _enter_with(self, node: cst.With) -> None:
        for item in node.items:
            if item.asname is not None:
                self._bind_target(item.asname.name, item.item, node, context_manager=True)

    def _enter_for(self, node: cst.For) -> None:
        self._bind_target(node.target, None, node)

    def _enter_global(self, node: cst.Global) -> None:
        self.scope.declared_global.update(n.name.value for n in node.names)

    def _enter_type_alias(self, node: cst.TypeAlias) -> None:
        name = node.name.value
        kind = BindingKind.SESSION_ALIAS if self.is_session_type(node.value) else BindingKind.OTHER
        self._bind(name, Binding(kind, name, node, self._qualify(name), node.value))

    def _bind_named_expr(self, node: cst.NamedExpr) -> None:
        if isinstance(node.target, cst.Name):
            self._bind_target(node.target, node.value, node)

    def _enter_call(self, node: cst.Call) -> None:
        """`s.add(obj)` / `s.add_all([a, b])`: those objects now belong to session `s`."""
        func = node.func
        if not (
            isinstance(func, cst.Attribute) and func.attr.value in ("add", "add_all") and node.args
        ):
            return
        session = self.session_binding(func.value)
        if session is None:
            return
        value = node.args[0].value
        names = (
            [e.value for e in value.elements]
            if isinstance(value, (cst.List, cst.Tuple))
            else [value]
        )
        for expr in names:
            if isinstance(expr, cst.Name):
                binding = self.lookup(expr.value)
                if binding is not None and binding.kind is BindingKind.OTHER:
                    binding.kind = BindingKind.ORM
                    binding.origin = session

    def leave(self, node: cst.CSTNode) -> None:
        if type(node) in _SCOPE_NODES and self.scope.parent is not None:
            self.scope = self.scope.parent

    # ------------------------------------------------------------------ scopes
    def _push(self, kind: ScopeKind, node: cst.CSTNode, name: str, is_async: bool = False) -> Scope:
        qualname = f"{self.scope.qualname}.{name}" if self.scope.qualname else name
        scope = Scope(kind, node, self.scope, qualname, is_async=is_async)
        self.scopes[node] = scope
        self.scope = scope
        return scope

    def _enter_function(self, node: cst.FunctionDef) -> None:
        name = node.name.value
        is_async = node.asynchronous is not None
        self._bind(
            name, Binding(BindingKind.FUNCTION, name, node, self._qualify(name), is_async=is_async)
        )
        scope = self._push(ScopeKind.FUNCTION, node, name, is_async)
        for param in parameters(node.params):
            scope.bindings[param.name.value] = self._param_binding(param)

    def function_scope(self) -> Scope | None:
        """The innermost function or lambda scope around the current node."""
        scope: Scope | None = self.scope
        while scope is not None and not scope.is_function:
            scope = scope.parent
        return scope

    def scope_of(self, node: cst.CSTNode) -> Scope | None:
        return self.scopes.get(node)

    def in_async_function(self) -> bool:
        scope = self.function_scope()
        return scope is not None and scope.kind is ScopeKind.FUNCTION and scope.is_async

    # ------------------------------------------------------------------ bindings
    def _qualify(self, name: str) -> str | None:
        if self.scope.kind is ScopeKind.MODULE:
            return f"{self.module_name}.{name}" if self.module_name else name
        return None

    def _bind(self, name: str, binding: Binding) -> None:
        scope = self.scope
        if name in scope.declared_global:
            scope = self.module_scope
        scope.bindings[name] = binding

    def lookup(self, name: str, scope: Scope | None = None) -> Binding | None:
        """Python's name resolution: local, enclosing functions (not classes), module."""
        start = scope or self.scope
        current: Scope | None = start
        while current is not None:
            if current is start or current.kind is not ScopeKind.CLASS:
                if name in current.declared_global:
                    return self.module_scope.bindings.get(name)
                binding = current.bindings.get(name)
                if binding is not None:
                    return binding
            current = current.parent
        return None

    def _bind_import(self, node: cst.Import | cst.ImportFrom) -> None:
        if isinstance(node, cst.Import):
            for alias in node.names:
                dotted = _dotted(alias.name)
                if dotted is None:
                    continue
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    local = alias.asname.name.value
                    self._bind(local, Binding(BindingKind.IMPORT, local, node, dotted))
                else:
                    top = dotted.split(".")[0]
                    self._bind(top, Binding(BindingKind.IMPORT, top, node, top))
            return
        base = self._import_from_base(node)
        if base is None or isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            imported = _dotted(alias.name)
            if imported is None:
                continue
            local = imported
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            qualname = f"{base}.{imported}" if base else imported
            self._bind(local, Binding(BindingKind.IMPORT, local, node, qualname))

    def _import_from_base(self, node: cst.ImportFrom) -> str | None:
        module = _dotted(node.module) if node.module is not None else ""
        if module is None:
            return None
        level = len(node.relative)
        if level == 0:
            return module
        # Relative imports resolve against this file's package, as Python does.
        package = self.module_name.split(".")[:-1] if self.module_name else []
        if level > 1:
            package = package[: len(package) - (level - 1)] if level - 1 <= len(package) else []
        parts = [*package, module] if module else package
        return ".".join(p for p in parts if p)

    def _param_binding(self, param: cst.Param) -> Binding:
        name = param.name.value
        request_scoped = self.is_request_scoped(param)
        is_session = param.annotation is not None and self.is_session_type(
            param.annotation.annotation
        )
        if not is_session and param.annotation is None and request_scoped:
            is_session = name in SESSION_PARAM_NAMES or name.endswith("_session")
        kind = BindingKind.SESSION if is_session else BindingKind.PARAM
        if kind is BindingKind.PARAM and param.annotation is not None:
            kind = self._kind_of_annotation(param.annotation.annotation) or kind
        return Binding(kind, name, param, request_scoped=request_scoped)

    def _kind_of_annotation(self, annotation: cst.BaseExpression) -> BindingKind | None:
        """AsyncEngine / AsyncConnection annotations (also inside Optional / `| None`)."""
        target = annotation
        if isinstance(target, cst.BinaryOperation) and _is_none(target.right):
            target = target.left
        if isinstance(target, cst.Subscript) and self.qualified_name(target.value) in OPTIONAL:
            element = target.slice[0].slice if target.slice else None
            if isinstance(element, cst.Index):
                target = element.value
        qualname = self.qualified_name(target) or ""
        last = qualname.rsplit(".", 1)[-1]
        if last == "AsyncEngine" and qualname.startswith("sqlalchemy"):
            return BindingKind.ENGINE
        if last == "AsyncConnection" and qualname.startswith("sqlalchemy"):
            return BindingKind.CONNECTION
        return None

    def _bind_annotated(self, node: cst.AnnAssign) -> None:
        target = node.target
        annotation = node.annotation.annotation
        if isinstance(target, cst.Name):
            name = target.value
            if _is_type_alias_annotation(annotation, self) and node.value is not None:
                kind = (
                    BindingKind.SESSION_ALIAS
                    if self.is_session_type(node.value)
                    else BindingKind.OTHER
                )
                self._bind(name, Binding(kind, name, node, self._qualify(name), node.value))
                return
            if node.value is not None and not (
                _is_none(node.value) and self.is_session_type(annotation)
            ):
                self._bind_target(target, node.value, node)
                return
            if self.is_session_type(annotation):
                if self.scope.kind is ScopeKind.CLASS:
                    self.scope.session_attributes[name] = Binding(BindingKind.SESSION, name, node)
                else:
                    self._bind(name, Binding(BindingKind.SESSION, name, node))
            return
        if node.value is not None:
            self._bind_target(target, node.value, node)

    def _bind_target(
        self,
        target: cst.BaseExpression,
        value: cst.BaseExpression | None,
        node: cst.CSTNode,
        context_manager: bool = False,
    ) -> None:
        if isinstance(target, cst.Name):
            name = target.value
            binding = self.classify_binding(name, value, node, context_manager)
            if binding.qualname is None and binding.kind in (
                BindingKind.FACTORY,
                BindingKind.SESSION_ALIAS,
                BindingKind.ENGINE,
                BindingKind.OTHER,
            ):
                binding.qualname = self._qualify(name)
            self._bind(name, binding)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._bind_target(element.value, None, node)
        elif isinstance(target, cst.StarredElement):
            self._bind_target(target.value, None, node)
        elif isinstance(target, cst.Attribute) and value is not None:
            self._bind_self_attribute(target, value)

    def _bind_self_attribute(self, target: cst.Attribute, value: cst.BaseExpression) -> None:
        """`self.session = session` makes `session` a session attribute of the class;
        `self.repo = UserRepository(session)` a wrapper attribute. An attribute assigned both a
        session and something else (other than None) is trusted as neither."""
        if not (isinstance(target.value, cst.Name) and target.value.value == "self") or _is_none(
            value
        ):
            return
        cls = self._method_class()
        if cls is None:
            return
        attribute = target.attr.value
        if attribute in cls.mixed_attributes:
            return
        direct = self.direct_session(value)
        held = self.session_binding(value)
        if direct is not None and attribute not in cls.wrapper_attributes:
            cls.session_attributes[attribute] = direct
        elif direct is None and held is not None and attribute not in cls.session_attributes:
            cls.wrapper_attributes[attribute] = held
        elif (
            attribute in cls.session_attributes
            or attribute in cls.wrapper_attributes
            or held is not None
        ):
            cls.session_attributes.pop(attribute, None)
            cls.wrapper_attributes.pop(attribute, None)
            cls.mixed_attributes.add(attribute)

    def _method_class(self) -> Scope | None:
        """The class whose method we are in (through nested functions and lambdas)."""
        function = self.function_scope()
        while function is not None and function.enclosing_class() is None:
            parent = function.parent
            function = parent if parent is not None and parent.is_function else None
        return function.enclosing_class() if function else None

    def classify_binding(
        self,
        name: str,
        value: cst.BaseExpression | None,
        node: cst.CSTNode,
        context_manager: bool = False,
    ) -> Binding:
        """What binding `name = value` (or `with value as name`) creates."""
        if value is None:
            return Binding(BindingKind.OTHER, name, node)
        if isinstance(value, cst.Call):
            made = self.call_makes(value, context_manager)
            if made is BindingKind.WRAPPER:
                return Binding(made, name, node, value=value, wraps=self._wrapped_session(value))
            if made is BindingKind.SESSION:
                given, setting = _expire_keyword(value)
                return Binding(
                    made,
                    name,
                    node,
                    value=value,
                    factory=_factory_of(value),
                    expire_on_commit=setting if given else None,
                    expire_given=given,
                )
            if made is BindingKind.FACTORY:
                return Binding(
                    made, name, node, value=value, expire_on_commit=_expire_keyword(value)[1]
                )
            if made is not None:
                return Binding(made, name, node, value=value)
        if (
            isinstance(value, cst.Await)
            and isinstance(value.expression, cst.Call)
            and isinstance(value.expression.func, cst.Attribute)
            and (
                (
                    value.expression.func.attr.value == "connect"
                    and self.is_async_engine(value.expression.func.value)
                )
                or (
                    value.expression.func.attr.value == "connection"
                    and self.direct_session(value.expression.func.value)
                )
            )
        ):
            return Binding(BindingKind.CONNECTION, name, node, value=value)
        loaded = self.loaded_from_session(value)
        if loaded is not None:
            kind, origin, optional = loaded
            return Binding(kind, name, node, value=value, origin=origin, optional=optional)
        if not context_manager:
            if self.is_session_type(value) and isinstance(value, cst.Subscript):
                return Binding(BindingKind.SESSION_ALIAS, name, node, value=value)
            aliased = self.session_binding(value)
            if aliased is not None:  # s2 = s
                return Binding(BindingKind.WRAPPER, name, node, value=value, wraps=aliased)
        return Binding(BindingKind.OTHER, name, node, value=value)

    def call_makes(self, call: cst.Call, context_manager: bool = False) -> BindingKind | None:
        """What kind of object a call returns, when that can be established."""
        func = call.func
        qualname = self.qualified_name(func)
        if qualname in ASYNC_SESSIONMAKER:
            return BindingKind.FACTORY
        if qualname in SESSIONMAKER and self._has_async_class_argument(call):
            return BindingKind.FACTORY
        if qualname in CREATE_ASYNC_ENGINE:
            return BindingKind.ENGINE
        if qualname in SESSIONMAKER:
            return BindingKind.SYNC_FACTORY
        if qualname in SYNC_SESSION_CLASSES:
            return BindingKind.SYNC_SESSION
        if qualname in CREATE_SYNC_ENGINE:
            return BindingKind.SYNC_ENGINE
        if self.is_async_session_class(func) or self.is_session_factory(func):
            return BindingKind.SESSION
        if isinstance(func, cst.Name):
            binding = self.lookup(func.value)
            if binding is not None and binding.kind is BindingKind.SYNC_FACTORY:
                return BindingKind.SYNC_SESSION
        # `async with engine.connect() as conn` / `engine.begin()`: an AsyncConnection.
        if (
            context_manager
            and isinstance(func, cst.Attribute)
            and func.attr.value in ("connect", "begin")
            and self.is_async_engine(func.value)
        ):
            return BindingKind.CONNECTION
        # `async with F.begin() as s` yields a session too.
        if (
            context_manager
            and isinstance(func, cst.Attribute)
            and func.attr.value == "begin"
            and self.is_session_factory(func.value)
        ):
            return BindingKind.SESSION
        if (
            not context_manager
            and self._wrapped_session(call) is not None
            and self._looks_like_class(func)
        ):
            return BindingKind.WRAPPER
        return None

    def _has_async_class_argument(self, call: cst.Call) -> bool:
        return any(
            arg.keyword is not None
            and arg.keyword.value == "class_"
            and self.is_async_session_class(arg.value)
            for arg in call.args
        )

    def _wrapped_session(self, call: cst.Call) -> Binding | None:
        for arg in call.args:
            held = self.session_binding(arg.value)
            if held is not None:
                return held
        return None

    def _looks_like_class(self, func: cst.BaseExpression) -> bool:
        """A constructor call: the callee is a class here, or a CamelCase name imported."""
        if isinstance(func, cst.Name):
            binding = self.lookup(func.value)
            if binding is not None and binding.kind is BindingKind.CLASS:
                return True
            last = func.value
        elif isinstance(func, cst.Attribute):
            last = func.attr.value
        else:
            return False
        return last[:1].isupper() and not last.isupper()

    def is_async_engine(self, expr: cst.BaseExpression) -> bool:
        """`engine` bound to create_async_engine(...), annotated AsyncEngine, or known by the index."""
        return self._bound_or_indexed(expr, BindingKind.ENGINE, self.facts.is_async_engine)

    def _bound_or_indexed(
        self, expr: cst.BaseExpression, kind: BindingKind, indexed: Callable[[str], bool]
    ) -> bool:
        """A name bound here to `kind`, or a name the repository index knows from another file."""
        if isinstance(expr, cst.Name):
            binding = self.lookup(expr.value)
            if binding is not None and binding.kind is kind:
                return True
        qualname = self.qualified_name(expr)
        return qualname is not None and indexed(qualname)

    def is_event_loop(self, expr: cst.BaseExpression) -> bool:
        """`asyncio.get_running_loop()` (or a name bound to it), `self.loop`, a parameter `loop`."""
        if isinstance(expr, cst.Call):
            return self.qualified_name(expr.func) in LOOP_GETTERS
        if _is_self_attribute(expr):
            return expr.attr.value.lstrip("_") in LOOP_NAMES
        if isinstance(expr, cst.Name):
            binding = self.lookup(expr.value)
            if binding is not None and isinstance(binding.value, cst.Call):
                return self.qualified_name(binding.value.func) in LOOP_GETTERS
            # A parameter or name called `loop` with no other known meaning.
            return expr.value in LOOP_NAMES and (binding is None or binding.value is None)
        return False

    def connection_binding(self, expr: cst.BaseExpression) -> Binding | None:
        """An AsyncConnection: `async with engine.connect() as conn`, `await engine.connect()`."""
        if isinstance(expr, cst.Name):
            binding = self.lookup(expr.value)
            if binding is not None and binding.kind is BindingKind.CONNECTION:
                return binding
        return None

    # ------------------------------------------------------------------ resolution
    def qualified_name(self, expr: cst.BaseExpression) -> str | None:
        """`aio.gather` -> `asyncio.gather` with `import asyncio as aio`; None for locals."""
        if isinstance(expr, cst.Name):
            binding = self.lookup(expr.value)
            if binding is None:
                return f"builtins.{expr.value}" if expr.value in BUILTIN_NAMES else None
            return (
                binding.qualname
                if binding.kind
                in (
                    BindingKind.IMPORT,
                    BindingKind.FUNCTION,
                    BindingKind.CLASS,
                    BindingKind.FACTORY,
                    BindingKind.SESSION_ALIAS,
                    BindingKind.ENGINE,
                )
                else None
            )
        if isinstance(expr, cst.Attribute):
            base = self.qualified_name(expr.value)
            if base is None or base.startswith("builtins."):
                return None
            return f"{base}.{expr.attr.value}"
        return None

    def is_async_session_class(self, expr: cst.BaseExpression) -> bool:
        """`AsyncSession` itself (SQLAlchemy's, SQLModel's or a project re-export of it)."""
        qualname = self.qualified_name(expr)
        if qualname is not None:
            return qualname.rsplit(".", 1)[-1] == "AsyncSession"
        # Unresolvable but spelled AsyncSession (e.g. imported under TYPE_CHECKING we did see).
        return (
            isinstance(expr, cst.Name)
            and expr.value == "AsyncSession"
            and self.lookup("AsyncSession") is None
        )

    def is_session_factory(self, expr: cst.BaseExpression) -> bool:
        return self._bound_or_indexed(expr, BindingKind.FACTORY, self.facts.is_session_factory)

    def is_session_type(self, annotation: cst.BaseExpression) -> bool:
        """True for AsyncSession, Annotated[AsyncSession, ...], Optional/| None, aliases, strings."""
        if isinstance(annotation, cst.SimpleString):
            parsed = _parse_annotation_string(
                annotation.evaluated_value if isinstance(annotation.evaluated_value, str) else ""
            )
            return parsed is not None and self.is_session_type(parsed)
        if isinstance(annotation, (cst.Name, cst.Attribute)):
            if self.is_async_session_class(annotation):
                return True
            if isinstance(annotation, cst.Name):
                binding = self.lookup(annotation.value)
                if binding is not None and binding.kind is BindingKind.SESSION_ALIAS:
                    return True
            qualname = self.qualified_name(annotation)
            return qualname is not None and self.facts.is_session_alias(qualname)
        if isinstance(annotation, cst.Subscript):
            base = self.qualified_name(annotation.value)
            elements = [e.slice.value for e in annotation.slice if isinstance(e.slice, cst.Index)]
            if base in ANNOTATED and elements:
                return self.is_session_type(elements[0])
            if base in OPTIONAL or base in UNION:
                return any(self.is_session_type(e) for e in elements if not _is_none(e))
            return False
        if isinstance(annotation, cst.BinaryOperation) and isinstance(
            annotation.operator, cst.BitOr
        ):
            sides = [annotation.left, annotation.right]
            return any(self.is_session_type(s) for s in sides if not _is_none(s))
        return False

    def session_binding(self, expr: cst.BaseExpression) -> Binding | None:
        """The session an expression gives access to: `s`, `repo` (built around s),
        `self.session`, `self.repo`."""
        if isinstance(expr, cst.Name):
            binding = self.lookup(expr.value)
            return binding.session if binding is not None else None
        if _is_self_attribute(expr):
            cls = self._method_class()
            if cls is not None:
                attribute = expr.attr.value
                return cls.session_attributes.get(attribute) or cls.wrapper_attributes.get(
                    attribute
                )
        return None

    def direct_session(self, expr: cst.BaseExpression, depth: int = 0) -> Binding | None:
        """The session `expr` IS: `s`, an alias `s2 = s`, `self.session` holding the session
        itself. Not an object built around one: `repo.get()` is the repository's method."""
        if isinstance(expr, cst.Name):
            binding = self.lookup(expr.value)
            if binding is None:
                return None
            if binding.kind is BindingKind.SESSION:
                return binding
            if (
                binding.kind is BindingKind.WRAPPER
                and isinstance(binding.value, (cst.Name, cst.Attribute))
                and depth < 3
                and self.direct_session(binding.value, depth + 1) is not None
            ):
                return binding.wraps
            return None
        if _is_self_attribute(expr):
            cls = self._method_class()
            if cls is not None:
                return cls.session_attributes.get(expr.attr.value)
        return None

    # ------------------------------------------------------------------ ORM objects
    def loaded_from_session(
        self, value: cst.BaseExpression
    ) -> tuple[BindingKind, Binding, bool] | None:
        """(RESULT or ORM, the session, may be None) for what a session query returns.

        `await s.execute(q)` is a Result; `await s.get(M, id)`, `await s.scalar(q)`,
        `(await s.execute(q)).scalar_one()`, `result.scalars().first()` are ORM instances.
        """
        if isinstance(value, cst.Await) and isinstance(value.expression, cst.Call):
            call = value.expression
            if isinstance(call.func, cst.Attribute):
                session = self.session_binding(call.func.value)
                method = call.func.attr.value
                if session is not None and method in RESULT_METHODS:
                    return BindingKind.RESULT, session, False
                if session is not None and method in INSTANCE_METHODS:
                    return BindingKind.ORM, session, INSTANCE_METHODS[method]
            return None
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute):
            method = value.func.attr.value
            if method in ROW_METHODS:
                origin = self.result_origin(value.func.value)
                if origin is not None:
                    return BindingKind.ORM, origin, ROW_METHODS[method]
        return None

    def result_origin(self, expr: cst.BaseExpression) -> Binding | None:
        """The session behind a Result expression: `await s.execute(q)`, `result`, `r.scalars()`."""
        if (
            isinstance(expr, cst.Call)
            and isinstance(expr.func, cst.Attribute)
            and expr.func.attr.value in RESULT_FILTERS
        ):
            return self.result_origin(expr.func.value)
        loaded = self.loaded_from_session(expr) if isinstance(expr, cst.Await) else None
        if loaded is not None and loaded[0] is BindingKind.RESULT:
            return loaded[1]
        if isinstance(expr, cst.Name):
            binding = self.lookup(expr.value)
            if binding is not None and binding.kind is BindingKind.RESULT:
                return binding.origin
        return None

    def orm_binding(self, expr: cst.BaseExpression) -> Binding | None:
        if isinstance(expr, cst.Name):
            binding = self.lookup(expr.value)
            if binding is not None and binding.kind is BindingKind.ORM:
                return binding
        return None

    def expire_on_commit(self, session: Binding, configured: bool | None = None) -> bool | None:
        """Whether committing `session` expires its objects; None when that cannot be known.

        Config wins; then the factory the session came from (in this file or the repository
        index); then what the repository's factories do in general.
        """
        if configured is not None:
            return configured
        if session.expire_given:  # AsyncSession(engine, expire_on_commit=False), factory(...=...)
            return session.expire_on_commit
        factory = session.factory
        if isinstance(factory, cst.Name):
            binding = self.lookup(factory.value)
            if binding is not None and binding.kind is BindingKind.FACTORY:
                return binding.expire_on_commit
        if factory is not None and self.is_async_session_class(factory):
            return True  # AsyncSession(engine) with no keyword: the default
        if factory is not None:
            qualname = self.qualified_name(factory)
            known = self.facts.factory_expires_on_commit(qualname) if qualname else None
            if known is not None:
                return known
        local = [b for b in self.module_scope.bindings.values() if b.kind is BindingKind.FACTORY]
        if any(b.expire_on_commit is not True for b in local):
            return False if any(b.expire_on_commit is False for b in local) else None
        from_repository = self.facts.expires_on_commit_by_default()
        if from_repository is not None:
            return from_repository
        return True if local else None

    # ------------------------------------------------------------------ FastAPI
    def is_depends_call(self, expr: cst.BaseExpression) -> bool:
        if not isinstance(expr, cst.Call):
            return False
        qualname = self.qualified_name(expr.func)
        if qualname is not None:
            return qualname in DEPENDS or qualname.endswith(".Depends")
        return isinstance(expr.func, cst.Name) and expr.func.value == "Depends"

    def is_request_scoped(self, param: cst.Param) -> bool:
        """Injected by FastAPI: default `Depends(...)`, or `Annotated[..., Depends(...)]` (also via alias)."""
        if param.default is not None and self.is_depends_call(param.default):
            return True
        if param.annotation is None:
            return False
        return self._annotation_has_depends(param.annotation.annotation, depth=0)

    def _annotation_has_depends(self, annotation: cst.BaseExpression, depth: int) -> bool:
        if depth > 3:
            return False
        if (
            isinstance(annotation, cst.Subscript)
            and self.qualified_name(annotation.value) in ANNOTATED
        ):
            metadata = [
                e.slice.value for e in annotation.slice[1:] if isinstance(e.slice, cst.Index)
            ]
            return any(self.is_depends_call(m) for m in metadata)
        if isinstance(annotation, cst.Name):
            binding = self.lookup(annotation.value)
            if binding is not None and binding.value is not None:
                return self._annotation_has_depends(binding.value, depth + 1)
            qualname = self.qualified_name(annotation)
            return qualname is not None and self.facts.is_session_alias(qualname)
        return False

    def dependency_names(self) -> frozenset[str]:
        """Names of functions used as `Depends(f)` in this file or (by the index) the repository."""
        if self._dependencies is None:
            found = set(self.facts.dependency_names)
            for node in _iter_nodes(self.module):
                if isinstance(node, cst.Call) and node.args and self.is_depends_call(node):
                    target = node.args[0].value
                    if isinstance(target, (cst.Name, cst.Attribute)):
                        found.add(
                            target.value if isinstance(target, cst.Name) else target.attr.value
                        )
            self._dependencies = frozenset(found)
        return self._dependencies

    def is_dependency(self, function: cst.FunctionDef) -> bool:
        return function.name.value in self.dependency_names()

    def is_endpoint(self, function: cst.FunctionDef) -> bool:
        """Decorated with `@X.get(...)`, `@X.post(...)`, ..., `@X.api_route(...)`, `@X.websocket(...)`."""
        for decorator in function.decorators:
            expr = decorator.decorator
            if (
                isinstance(expr, cst.Call)
                and isinstance(expr.func, cst.Attribute)
                and expr.func.attr.value in ENDPOINT_METHODS
            ):
                return True
        return False

    # ------------------------------------------------------------------ lazy per-function facts
    def flow(self, function: cst.FunctionDef | cst.Lambda) -> FlowGraph:
        """The function's control-flow graph (built on first use, then cached)."""
        graph = self._graphs.get(id(function))
        if graph is None:
            graph = self._graphs[id(function)] = build_graph(function)
        return graph

    def name_counts_in(self, function: cst.CSTNode) -> Counter[str]:
        """How often each name appears inside a function (nested functions included).

        Binding occurrences count too: a name that appears once was only ever bound.
        """
        key = id(function)
        cached = self._name_counts.get(key)
        if cached is None:
            cached = Counter(n.value for n in _iter_nodes(function) if isinstance(n, cst.Name))
            self._name_counts[key] = cached
        return cached

    def free_session_uses(
        self, function: cst.FunctionDef | cst.Lambda
    ) -> list[tuple[Binding, cst.CSTNode]]:
        """Sessions of enclosing scopes that a nested function or lambda reads (a closure)."""
        scope = self.scopes.get(function)
        if scope is None:
            return []
        uses: list[tuple[Binding, cst.CSTNode]] = []
        body = function.body
        for node in _iter_nodes(body):
            if isinstance(node, cst.Name) and node.value not in scope.bindings:
                binding = self.lookup(node.value, scope)
                if binding is not None and binding.session is not None:
                    uses.append((binding.session, node))
            elif (
                isinstance(node, cst.Attribute)
                and isinstance(node.value, cst.Name)
                and node.value.value == "self"
            ):
                saved = self.scope
                self.scope = scope
                try:
                    held = self.session_binding(node)
                finally:
                    self.scope = saved
                if held is not None:
                    uses.append((held, node))
        return uses


# ---------------------------------------------------------------------- helpers
def parameters(params: cst.Parameters) -> Iterator[cst.Param]:
    """Every parameter of a function or lambda, in order."""
    yield from params.posonly_params
    yield from params.params
    if isinstance(params.star_arg, cst.Param):
        yield params.star_arg
    yield from params.kwonly_params
    if params.star_kwarg is not None:
        yield params.star_kwarg


def _dotted(expr: cst.BaseExpression | cst.CSTNode | None) -> str | None:
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        base = _dotted(expr.value)
        return f"{base}.{expr.attr.value}" if base is not None else None
    return None


def _is_self_attribute(expr: cst.BaseExpression) -> TypeGuard[cst.Attribute]:
    return (
        isinstance(expr, cst.Attribute)
        and isinstance(expr.value, cst.Name)
        and expr.value.value == "self"
    )


def _is_none(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value == "None"


def _is_type_alias_annotation(annotation: cst.BaseExpression, semantics: Semantics) -> bool:
    qualname = semantics.qualified_name(annotation)
    return qualname in ("typing.TypeAlias", "typing_extensions.TypeAlias") or (
        isinstance(annotation, cst.Name) and annotation.value == "TypeAlias"
    )


@lru_cache(maxsize=256)
def _parse_annotation_string(text: str) -> cst.BaseExpression | None:
    try:
        return cst.parse_expression(text.strip())
    except cst.ParserSyntaxError:
        return None


def _iter_nodes(root: cst.CSTNode | Sequence[cst.CSTNode]) -> Iterator[cst.CSTNode]:
    """All nodes below `root`, without libcst's costly node rebuilding visit."""
    if isinstance(root, cst.CSTNode):
        yield from iter_descendants(root)
    else:
        for node in root:
            yield from iter_descendants(node)


def _factory_of(call: cst.Call) -> cst.BaseExpression | None:
    """`F()` -> F; `F.begin()` -> F; `AsyncSession(...)` -> None (no factory)."""
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value == "begin":
        return func.value
    return func if isinstance(func, (cst.Name, cst.Attribute)) else None


def _expire_keyword(call: cst.Call) -> tuple[bool, bool | None]:
    """(given, value) of a call's `expire_on_commit=`: value None when it is not a literal, or
    when `**options` may set it; not given means the default, True."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "expire_on_commit":
            if isinstance(arg.value, cst.Name) and arg.value.value in ("True", "False"):
                return True, arg.value.value == "True"
            return True, None
        if arg.star == "**":
            return True, None
    return False, True


_SCOPE_NODES = frozenset({cst.FunctionDef, cst.ClassDef, cst.Lambda})
# Assignments bind when the traversal enters them, before their value is visited: rules that
# see a statement want its binding. (A value that reads its own target, `stmt = stmt.where(...)`,
# therefore resolves to the new binding; rules that care look at `Binding.value` chains.)
_ENTER: dict[type[cst.CSTNode], Callable[[Semantics, Any], None]] = {
    cst.Assign: Semantics._bind_assign,
    cst.AnnAssign: Semantics._bind_annotated,
    cst.NamedExpr: Semantics._bind_named_expr,
    cst.FunctionDef: Semantics._enter_function,
    cst.ClassDef: Semantics._enter_class,
    cst.Lambda: Semantics._enter_lambda,
    cst.Import: Semantics._bind_import,
    cst.ImportFrom: Semantics._bind_import,
    cst.With: Semantics._enter_with,
    cst.For: Semantics._enter_for,
    cst.Global: Semantics._enter_global,
    cst.TypeAlias: Semantics._enter_type_alias,
    cst.Call: Semantics._enter_call,
}
