"""Generate a deterministic FastAPI + SQLAlchemy-asyncio code base to benchmark asyncguard on.

    python benchmarks/gen_corpus.py [--out benchmarks/corpus] [--seed 20240601]

Writes `<out>/app/...` (and `<out>/tests`, `<out>/migrations`, `<out>/scripts`): about 2,100
files and 330k lines laid out like a real service: per domain, models (DeclarativeBase +
Mapped), pydantic schemas, repositories around an AsyncSession, services, routers with
`SessionDep` / `Depends(get_session)` endpoints, background tasks (asyncio.gather,
create_task, TaskGroup; mostly correct, a few deliberately buggy), plain utilities with no
async or session code (the prefilter skips those), alembic migrations, tests, and one
~10,000-line legacy module (the "worst file"). The same seed always gives the same bytes.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "corpus"
DEFAULT_SEED = 20240601

DOMAINS = (
    "billing", "catalog", "identity", "orders", "inventory", "shipping", "payments",
    "notifications", "analytics", "support", "subscriptions", "organizations", "webhooks",
    "reporting", "search", "media", "pricing", "accounts", "audit", "integrations",
)  # fmt: skip
NOUNS = (
    "invoice", "customer", "product", "order", "payment", "refund", "coupon", "discount",
    "shipment", "parcel", "carrier", "warehouse", "stock_item", "supplier", "category", "tag",
    "review", "rating", "ticket", "comment", "attachment", "message", "channel", "template",
    "subscription", "plan", "price", "benefit", "license_key", "organization", "member",
    "invitation", "role", "permission", "api_token", "webhook_endpoint", "delivery", "event",
    "report", "dashboard", "metric", "export_job", "import_job", "file", "image", "video",
    "playlist", "address", "tax_rate", "currency_rate", "payout", "transfer", "balance",
    "ledger_entry", "dispute", "checkout", "cart", "wishlist", "notification", "preference",
    "integration", "connector", "sync_run", "audit_log", "session_record", "device", "region",
)  # fmt: skip

# name, annotation, column type, sample literal, kind
FIELDS = (
    ("email", "str", "String(255)", '"ada@example.com"', "str"),
    ("title", "str", "String(200)", '"Quarterly plan"', "str"),
    ("description", "str | None", "Text", '"A longer text"', "str"),
    ("slug", "str", "String(80)", '"quarterly-plan"', "str"),
    ("currency", "str", "String(3)", '"EUR"', "str"),
    ("country", "str | None", "String(2)", '"FR"', "str"),
    ("external_id", "str | None", "String(64)", '"ext_123"', "str"),
    ("reference", "str", "String(40)", '"REF-2024-0001"', "str"),
    ("amount_cents", "int", "Integer", "1999", "int"),
    ("quantity", "int", "Integer", "3", "int"),
    ("priority", "int", "SmallInteger", "2", "int"),
    ("version", "int", "Integer", "1", "int"),
    ("attempts", "int", "Integer", "0", "int"),
    ("is_active", "bool", "Boolean", "True", "bool"),
    ("is_archived", "bool", "Boolean", "False", "bool"),
    ("is_public", "bool", "Boolean", "True", "bool"),
    ("score", "float", "Float", "0.75", "float"),
    ("weight_kg", "float | None", "Float", "1.25", "float"),
    ("unit_price", "Decimal", "Numeric(12, 2)", 'Decimal("9.99")', "dec"),
    ("tax_amount", "Decimal", "Numeric(12, 2)", 'Decimal("1.20")', "dec"),
    ("due_at", "datetime | None", "DateTime(timezone=True)", "None", "dt"),
    ("processed_at", "datetime | None", "DateTime(timezone=True)", "None", "dt"),
    ("expires_at", "datetime | None", "DateTime(timezone=True)", "None", "dt"),
    ("extra", "dict[str, Any]", "JSON", '{"source": "import"}', "json"),
    ("settings", "dict[str, Any]", "JSON", '{"theme": "dark"}', "json"),
)  # fmt: skip
BASE_FIELDS = (
    ("name", "str", "String(120)", '"Example"', "str"),
    ("status", "str", "String(32)", '"active"', "str"),
)
STATUSES = ("draft", "active", "pending", "paused", "archived", "failed", "succeeded", "canceled")
SUFFIXES = ("", "Line", "Event", "Snapshot", "Note", "Link", "Setting", "History", "Attachment")


def camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def plural(snake: str) -> str:
    if snake.endswith(("s", "x")):
        return snake + "es"
    if snake.endswith("y") and snake[-2] not in "aeiou":
        return snake[:-1] + "ies"
    return snake + "s"


@dataclass
class Entity:
    domain: str
    snake: str
    fields: list[tuple[str, str, str, str, str]]

    @property
    def cls(self) -> str:
        return camel(self.snake)

    @property
    def plural(self) -> str:
        return plural(self.snake)

    @property
    def table(self) -> str:
        return f"{self.domain}_{self.plural}"

    def subs(self, **extra: object) -> dict[str, object]:
        return {
            "C": self.cls,
            "c": self.snake,
            "P": self.plural,
            "D": self.domain,
            "T": self.table,
            **extra,
        }


def render(template: str, values: dict[str, object]) -> list[str]:
    return Template(template).substitute(values).strip("\n").split("\n")


# ---------------------------------------------------------------------------- templates
REPO_HEADER = '''
"""Data access for ${P} (${D})."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.${D}.exceptions import ${C}NotFound
from app.${D}.models.${c} import ${C}


class ${C}Repository:
    """Queries over `${T}`; never commits, the caller owns the transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, item_id: int) -> ${C} | None:
        return await self.session.get(${C}, item_id)

    async def get_or_raise(self, item_id: int) -> ${C}:
        item = await self.get(item_id)
        if item is None:
            raise ${C}NotFound(item_id)
        return item

    async def list(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        status: str | None = None,
    ) -> Sequence[${C}]:
        stmt = select(${C}).order_by(${C}.created_at.desc(), ${C}.id.desc())
        if status is not None:
            stmt = stmt.where(${C}.status == status)
        result = await self.session.execute(stmt.offset(offset).limit(limit))
        return result.scalars().all()

    async def create(self, **values: Any) -> ${C}:
        item = ${C}(**values)
        self.session.add(item)
        await self.session.flush()
        return item

    async def update(self, item: ${C}, **values: Any) -> ${C}:
        for key, value in values.items():
            setattr(item, key, value)
        await self.session.flush()
        return item

    async def delete(self, item: ${C}) -> None:
        await self.session.delete(item)
        await self.session.flush()
'''

REPO_METHODS = (
    """
    async def get_by_${f}(self, ${f}: ${t}) -> ${C} | None:
        stmt = select(${C}).where(${C}.${f} == ${f})
        result = await self.session.execute(stmt)
        return result.scalar_one_or_none()
""",
    '''
    async def list_by_${f}(
        self, ${f}: ${t}, *, offset: int = 0, limit: int = 50
    ) -> Sequence[${C}]:
        """${P} whose ${f} matches, newest first."""
        stmt = (
            select(${C})
            .where(${C}.${f} == ${f})
            .order_by(${C}.created_at.desc(), ${C}.id.desc())
            .offset(offset)
            .limit(limit)
        )
        result = await self.session.scalars(stmt)
        return result.all()
''',
    """
    async def count_by_${f}(self, ${f}: ${t}) -> int:
        stmt = select(func.count()).select_from(${C}).where(${C}.${f} == ${f})
        return (await self.session.execute(stmt)).scalar_one()
""",
    """
    async def set_${f}(self, item_id: int, value: ${t}) -> None:
        stmt = (
            update(${C})
            .where(${C}.id == item_id)
            .values(${f}=value, version=${C}.version + 1)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(stmt)
""",
    """
    async def totals_by_${f}(self) -> dict[${t}, int]:
        stmt = select(${C}.${f}, func.count(${C}.id)).group_by(${C}.${f})
        rows = (await self.session.execute(stmt)).all()
        return {key: count for key, count in rows}
""",
    """
    async def search_${s}(self, term: str, *, limit: int = 20) -> list[${C}]:
        pattern = f"%{term.strip().lower()}%"
        stmt = (
            select(${C})
            .where(or_(func.lower(${C}.${s}).like(pattern), func.lower(${C}.name).like(pattern)))
            .order_by(${C}.name)
            .limit(limit)
        )
        result = await self.session.execute(stmt)
        return list(result.scalars())
""",
    """
    async def lock_${n}(self, item_id: int) -> ${C}:
        stmt = select(${C}).where(${C}.id == item_id).with_for_update(skip_locked=${b})
        result = await self.session.execute(stmt)
        item = result.scalar_one_or_none()
        if item is None:
            raise ${C}NotFound(item_id)
        return item
""",
    """
    async def create_many_${n}(self, payloads: Iterable[dict[str, Any]]) -> list[${C}]:
        items = [${C}(**payload) for payload in payloads]
        self.session.add_all(items)
        await self.session.flush()
        for item in items:
            await self.session.refresh(item)
        return items
""",
    """
    async def purge_before_${n}(self, cutoff: datetime, *, status: str = "${st}") -> int:
        stmt = delete(${C}).where(${C}.created_at < cutoff, ${C}.status == status)
        result = await self.session.execute(stmt)
        return result.rowcount or 0
""",
    """
    async def with_relations_${n}(self, ids: Sequence[int]) -> Sequence[${C}]:
        if not ids:
            return []
        stmt = (
            select(${C})
            .where(${C}.id.in_(ids))
            .options(selectinload(${C}.children))
            .execution_options(populate_existing=True)
        )
        result = await self.session.execute(stmt)
        return result.scalars().unique().all()
""",
    '''
    async def page_after_${n}(self, cursor: int | None, size: int = 100) -> tuple[list[${C}], int | None]:
        """Keyset pagination on the primary key."""
        stmt = select(${C}).order_by(${C}.id).limit(size + 1)
        if cursor is not None:
            stmt = stmt.where(${C}.id > cursor)
        rows = list((await self.session.scalars(stmt)).all())
        next_cursor = rows[size - 1].id if len(rows) > size else None
        return rows[:size], next_cursor
''',
)

MODEL_HEADER = '''
"""Database models for ${P}."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.models import Base, TimestampMixin
'''

MODEL_CLASS_HEAD = '''


class ${K}(TimestampMixin, Base):
    """${doc}"""

    __tablename__ = "${tbl}"
    __table_args__ = (
        UniqueConstraint("organization_id", "name", name="uq_${tbl}_org_name"),
        Index("ix_${tbl}_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
'''

MODEL_CLASS_TAIL = """
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("${tbl}.id"), nullable=True)
    children: Mapped[list[${K}]] = relationship(back_populates="parent", lazy="raise")
    parent: Mapped[${K} | None] = relationship(
        back_populates="children", remote_side="${K}.id", lazy="raise"
    )

    def __repr__(self) -> str:
        return f"<${K} id={self.id} name={self.name!r} status={self.status}>"

    @property
    def is_terminal(self) -> bool:
        return self.status in ("archived", "failed", "canceled")

    def touch(self, when: datetime) -> None:
        self.updated_at = when
        self.version = (self.version or 0) + 1
"""

SCHEMA_HEADER = '''
"""API schemas for ${P}."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
'''

SCHEMA_BLOCK = """


class ${K}Base(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

${fields}


class ${K}Create(${K}Base):
    status: Literal["draft", "active"] = "draft"

    @field_validator("name")
    @classmethod
    def name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        return value


class ${K}Update(BaseModel):
    model_config = ConfigDict(extra="forbid")

${optional}

    @model_validator(mode="after")
    def at_least_one(self) -> ${K}Update:
        if not self.model_fields_set:
            raise ValueError("nothing to update")
        return self


class ${K}Read(${K}Base):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: str
    created_at: datetime
    updated_at: datetime | None = None


class ${K}Page(BaseModel):
    items: list[${K}Read]
    total: int = Field(ge=0)
    next_cursor: int | None = None
"""

SERVICE_HEADER = '''
"""Business rules for ${P}."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import async_session
from app.core.http import ExternalClient
from app.${D}.exceptions import ${C}Conflict, ${C}NotFound
from app.${D}.models.${c} import ${C}
from app.${D}.repositories.${c} import ${C}Repository
from app.${D}.schemas.${c} import ${C}Create, ${C}Update

logger = logging.getLogger(__name__)

ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"active", "canceled"}),
    "active": frozenset({"paused", "archived", "failed"}),
    "paused": frozenset({"active", "archived"}),
    "failed": frozenset({"active", "archived"}),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class ${C}Service:
    """Use cases around ${P}; commits at the end of each public method."""

    def __init__(self, session: AsyncSession, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.session = session
        self.repository = ${C}Repository(session)
        self.clock = clock

    async def get(self, item_id: int) -> ${C}:
        item = await self.repository.get(item_id)
        if item is None:
            raise ${C}NotFound(item_id)
        return item

    async def list(self, *, offset: int = 0, limit: int = 50, status: str | None = None) -> Sequence[${C}]:
        return await self.repository.list(offset=offset, limit=limit, status=status)

    async def create(self, payload: ${C}Create) -> ${C}:
        existing = await self.repository.get_by_name(payload.name)
        if existing is not None:
            raise ${C}Conflict(f"a ${c} named {payload.name!r} already exists")
        item = await self.repository.create(**payload.model_dump())
        await self.session.commit()
        logger.info("created ${c} %s", item.id)
        return item

    async def update(self, item_id: int, payload: ${C}Update) -> ${C}:
        item = await self.get(item_id)
        values = payload.model_dump(exclude_unset=True)
        item = await self.repository.update(item, **values)
        item.touch(self.clock())
        await self.session.commit()
        return item
'''

SERVICE_METHODS = (
    """
    async def transition_${n}(self, item_id: int, target: str) -> ${C}:
        item = await self.repository.lock_${n}(item_id) if hasattr(self.repository, "lock_${n}") else await self.get(item_id)
        allowed = ALLOWED_TRANSITIONS.get(item.status, frozenset())
        if target not in allowed:
            raise ${C}Conflict(f"cannot move ${c} {item_id} from {item.status} to {target}")
        item.status = target
        if target == "archived":
            item.touch(self.clock())
        elif target == "failed":
            logger.warning("${c} %s failed after %s attempts", item_id, getattr(item, "attempts", 0))
        await self.session.commit()
        return item
""",
    '''
    async def summary_${n}(self, organization_id: int) -> dict[str, Any]:
        """Counts for the dashboard, one query after another on the request's session."""
        total = await self.session.scalar(
            select(func.count(${C}.id)).where(${C}.organization_id == organization_id)
        )
        active = await self.session.scalar(
            select(func.count(${C}.id)).where(
                ${C}.organization_id == organization_id, ${C}.status == "active"
            )
        )
        newest = await self.session.scalar(
            select(func.max(${C}.created_at)).where(${C}.organization_id == organization_id)
        )
        return {"total": total or 0, "active": active or 0, "newest": newest}
''',
    '''
    async def enrich_${n}(self, item_id: int, client: ExternalClient) -> dict[str, Any]:
        """External look-ups run concurrently; none of them touches the session."""
        item = await self.get(item_id)
        profile, limits, rates = await asyncio.gather(
            client.fetch_profile(item.name),
            client.fetch_limits(item.organization_id),
            client.fetch_rates("${cur}"),
        )
        return {"item": item.id, "profile": profile, "limits": limits, "rates": rates}
''',
    """
    async def archive_stale_${n}(self, older_than: timedelta = timedelta(days=${days})) -> int:
        cutoff = self.clock() - older_than
        stale = await self.session.scalars(
            select(${C}).where(${C}.status == "paused", ${C}.updated_at < cutoff).limit(500)
        )
        count = 0
        for item in stale:
            item.status = "archived"
            item.touch(self.clock())
            count += 1
        await self.session.commit()
        logger.info("archived %d stale ${P}", count)
        return count
""",
    """
    def export_rows_${n}(self, items: Sequence[${C}]) -> list[dict[str, Any]]:
        rows = []
        for item in items:
            row = {
                "id": item.id,
                "name": item.name,
                "status": item.status,
                "created_at": item.created_at.isoformat() if item.created_at else None,
            }
            if item.is_terminal:
                row["closed"] = True
            rows.append(row)
        return rows
""",
    """
    async def bulk_update_${n}(self, ids: Sequence[int], payload: ${C}Update) -> int:
        values = payload.model_dump(exclude_unset=True)
        updated = 0
        for chunk_start in range(0, len(ids), 200):
            chunk = ids[chunk_start : chunk_start + 200]
            items = await self.repository.with_relations_${n}(chunk) if hasattr(self.repository, "with_relations_${n}") else []
            for item in items:
                for key, value in values.items():
                    setattr(item, key, value)
                updated += 1
            await self.session.flush()
        await self.session.commit()
        return updated
""",
)

# Correct: every concurrent query has its own session.
SERVICE_GATHER_OK = """


async def _count_in_own_session_${n}(status: str) -> int:
    async with async_session() as session:
        result = await session.execute(
            select(func.count(${C}.id)).where(${C}.status == status)
        )
        return result.scalar_one()


async def status_breakdown_${n}() -> dict[str, int]:
    statuses = ("draft", "active", "paused", "archived")
    counts = await asyncio.gather(*(_count_in_own_session_${n}(s) for s in statuses))
    return dict(zip(statuses, counts, strict=True))
"""

# Buggy: one AsyncSession shared by concurrent awaitables (AG201).
SERVICE_GATHER_BUG = """


async def dashboard_${n}(session: AsyncSession, organization_id: int) -> tuple[int, int]:
    repository = ${C}Repository(session)
    active, paused = await asyncio.gather(
        repository.count_by_status("active"),
        repository.count_by_status("paused"),
    )
    return active, paused
"""

ROUTER_HEADER = '''
"""HTTP endpoints for ${P}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Query, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import SessionDep, get_session
from app.core.deps import CurrentUser
from app.${D}.exceptions import ${C}Conflict, ${C}NotFound
from app.${D}.schemas.${c} import ${C}Create, ${C}Page, ${C}Read, ${C}Update
from app.${D}.services.${c} import ${C}Service

router = APIRouter(prefix="/${D}/${P}", tags=["${D}"])


@router.get("", response_model=${C}Page)
async def list_${P}(
    session: SessionDep,
    user: CurrentUser,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status_filter: str | None = Query(None, alias="status"),
) -> ${C}Page:
    service = ${C}Service(session)
    items = await service.list(offset=offset, limit=limit, status=status_filter)
    return ${C}Page(items=[${C}Read.model_validate(i) for i in items], total=len(items))


@router.get("/{item_id}", response_model=${C}Read)
async def get_${c}(item_id: int, session: SessionDep, user: CurrentUser) -> ${C}Read:
    try:
        item = await ${C}Service(session).get(item_id)
    except ${C}NotFound:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="${c} not found") from None
    return ${C}Read.model_validate(item)


@router.post("", response_model=${C}Read, status_code=status.HTTP_201_CREATED)
async def create_${c}(
    payload: ${C}Create,
    background_tasks: BackgroundTasks,
    user: CurrentUser,
    session: AsyncSession = Depends(get_session),
) -> ${C}Read:
    try:
        item = await ${C}Service(session).create(payload)
    except ${C}Conflict as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    background_tasks.add_task(notify_created, item.id, user.id)
    return ${C}Read.model_validate(item)


async def notify_created(item_id: int, user_id: int) -> None:
    """Runs after the response; opens nothing, only logs."""
    print(f"${c} {item_id} created by {user_id}")
'''

ROUTER_ENDPOINTS = (
    """


@router.patch("/{item_id}", response_model=${C}Read)
async def update_${c}_${n}(
    item_id: int, payload: ${C}Update, session: SessionDep, user: CurrentUser
) -> ${C}Read:
    service = ${C}Service(session)
    try:
        item = await service.update(item_id, payload)
    except ${C}NotFound:
        raise HTTPException(status_code=404, detail="${c} not found") from None
    except ${C}Conflict as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return ${C}Read.model_validate(item)
""",
    """


@router.post("/{item_id}/${act}", response_model=${C}Read)
async def ${act}_${c}_${n}(
    item_id: int,
    user: CurrentUser,
    session: AsyncSession = Depends(get_session),
) -> ${C}Read:
    service = ${C}Service(session)
    try:
        item = await service.transition_${n}(item_id, "${st}") if hasattr(service, "transition_${n}") else await service.get(item_id)
    except ${C}NotFound:
        raise HTTPException(status_code=404) from None
    except ${C}Conflict as error:
        raise HTTPException(status_code=409, detail=str(error)) from None
    return ${C}Read.model_validate(item)
""",
    """


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_${c}_${n}(item_id: int, session: SessionDep, user: CurrentUser) -> None:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="admins only")
    service = ${C}Service(session)
    try:
        item = await service.get(item_id)
    except ${C}NotFound:
        return None
    await service.repository.delete(item)
    await session.commit()
    return None
""",
    """


@router.get("/stats/${n}")
async def stats_${n}(session: SessionDep, user: CurrentUser) -> dict[str, object]:
    service = ${C}Service(session)
    by_status = await service.repository.totals_by_status() if hasattr(service.repository, "totals_by_status") else {}
    return {
        "organization": user.organization_id,
        "by_status": by_status,
        "total": sum(by_status.values()),
    }
""",
    """


@router.get("/search/${n}", response_model=list[${C}Read])
async def search_${P}_${n}(
    session: SessionDep,
    q: Annotated[str, Query(min_length=2, max_length=100)],
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> list[${C}Read]:
    repository = ${C}Service(session).repository
    items = await repository.list(limit=limit)
    needle = q.lower()
    return [${C}Read.model_validate(i) for i in items if needle in i.name.lower()]
""",
)

TASKS_HEADER = '''
"""Background jobs for the ${D} domain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import async_session
from app.${D}.models.${c} import ${C}
from app.${D}.repositories.${c} import ${C}Repository

logger = logging.getLogger(__name__)
_running: set[asyncio.Task[None]] = set()
'''

TASK_BLOCKS_OK = (
    '''


async def _refresh_one_${n}(item_id: int) -> None:
    async with async_session() as session:
        repository = ${C}Repository(session)
        item = await repository.get(item_id)
        if item is None:
            return
        item.status = "active"
        await session.commit()


async def refresh_all_${n}(ids: Sequence[int]) -> None:
    """One session per task: safe to run concurrently."""
    async with asyncio.TaskGroup() as tg:
        for item_id in ids:
            tg.create_task(_refresh_one_${n}(item_id))
''',
    '''


def schedule_${n}(item_id: int) -> None:
    """Fire and keep: the set holds the task until it is done."""
    task = asyncio.create_task(_process_${n}(item_id))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _process_${n}(item_id: int) -> None:
    async with async_session() as session:
        result = await session.execute(select(${C}).where(${C}.id == item_id))
        item = result.scalar_one_or_none()
        if item is not None:
            logger.info("processed ${c} %s", item.id)
''',
    """


async def sweep_${n}(batch: int = 100) -> int:
    async with async_session() as session:
        rows = await session.scalars(select(${C}.id).where(${C}.status == "pending").limit(batch))
        ids = list(rows)
    results = await asyncio.gather(
        *(_refresh_in_own_session_${n}(i) for i in ids), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, Exception)]
    for failure in failures:
        logger.error("sweep failed: %s", failure)
    return len(ids) - len(failures)


async def _refresh_in_own_session_${n}(item_id: int) -> None:
    async with async_session() as session, session.begin():
        item = await session.get(${C}, item_id)
        if item is not None:
            item.status = "active"
""",
)

TASK_BLOCKS_BUG = (
    '''


async def kick_off_${n}(item_id: int) -> None:
    """BUG (AG501): the task is thrown away."""
    asyncio.create_task(_notify_${n}(item_id))


async def _notify_${n}(item_id: int) -> None:
    await asyncio.sleep(0)
    logger.info("notified about ${c} %s", item_id)
''',
    '''


async def recalculate_${n}(session: AsyncSession, first: int, second: int) -> None:
    """BUG (AG201): two tasks of one TaskGroup share the caller's session."""
    repository = ${C}Repository(session)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(repository.get(first))
        tg.create_task(repository.get(second))
''',
)

UTIL_BLOCKS = (
    '''


def slugify_${n}(text: str, *, max_length: int = ${ml}) -> str:
    """Lower-case ASCII words joined by dashes."""
    normalized = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", normalized.lower())
    slug = "-".join(words)
    return slug[:max_length].rstrip("-")
''',
    """


def chunked_${n}(items: Iterable[T], size: int) -> Iterator[list[T]]:
    if size <= 0:
        raise ValueError("size must be positive")
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
""",
    """


def format_money_${n}(amount_cents: int, currency: str = "${cur}") -> str:
    sign = "-" if amount_cents < 0 else ""
    units, cents = divmod(abs(amount_cents), 100)
    grouped = f"{units:,}".replace(",", "\\u202f")
    symbol = {"EUR": "\\u20ac", "USD": "$$", "GBP": "\\u00a3"}.get(currency, currency + " ")
    return f"{sign}{symbol}{grouped}.{cents:02d}"
""",
    """


def month_range_${n}(year: int, month: int) -> tuple[date, date]:
    first = date(year, month, 1)
    if month == 12:
        last = date(year + 1, 1, 1) - timedelta(days=1)
    else:
        last = date(year, month + 1, 1) - timedelta(days=1)
    return first, last


def business_days_${n}(start: date, end: date) -> int:
    days = 0
    current = start
    while current <= end:
        if current.weekday() < 5:
            days += 1
        current += timedelta(days=1)
    return days
""",
    """


@dataclass(frozen=True)
class Window${n}:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("window ends before it starts")

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def split(self, parts: int) -> list[Window${n}]:
        step = (self.end - self.start) / parts
        return [Window${n}(self.start + step * i, self.start + step * (i + 1)) for i in range(parts)]
""",
    """


class Level${n}(enum.IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | int) -> Level${n}:
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown level {value!r}") from None
""",
    """


def retry_${n}(attempts: int = ${att}, delay: float = 0.${att}) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def decorator(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            last: Exception | None = None
            for attempt in range(attempts):
                try:
                    return function(*args, **kwargs)
                except (ConnectionError, TimeoutError) as error:
                    last = error
                    time.sleep(delay * (2**attempt))
            assert last is not None
            raise last

        return wrapper

    return decorator
""",
    """


_EMAIL_${n} = re.compile(r"^[^@\\s]+@[^@\\s]+\\.[a-z]{2,}$$", re.IGNORECASE)


def normalize_email_${n}(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL_${n}.match(value):
        raise ValueError(f"not an email address: {value!r}")
    local, _, domain = value.partition("@")
    if domain in ("gmail.com", "googlemail.com"):
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}"
""",
    """


def render_table_${n}(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    header = " | ".join(c.ljust(widths[c]) for c in columns)
    rule = "-+-".join("-" * widths[c] for c in columns)
    body = [" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\\n".join([header, rule, *body])
""",
)

UTIL_HEADER = '''
"""${doc}"""

from __future__ import annotations

import enum
import functools
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

T = TypeVar("T")
'''

TEST_HEADER = '''
"""API tests for ${P}."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.${D}.models.${c} import ${C}

pytestmark = pytest.mark.asyncio
'''

TEST_BLOCKS = (
    """


async def test_create_${c}_${n}(client: AsyncClient, session: AsyncSession) -> None:
    response = await client.post("/${D}/${P}", json={"name": "item-${n}", "status": "draft"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "item-${n}"
    stored = await session.scalar(select(${C}).where(${C}.id == body["id"]))
    assert stored is not None
    assert stored.status == "draft"
""",
    """


@pytest.mark.parametrize("limit", [1, 10, 50])
async def test_list_${P}_${n}(client: AsyncClient, session: AsyncSession, limit: int) -> None:
    session.add_all([${C}(name=f"bulk-{i}", status="active", organization_id=1) for i in range(60)])
    await session.commit()
    response = await client.get("/${D}/${P}", params={"limit": limit})
    assert response.status_code == 200
    assert len(response.json()["items"]) == limit
""",
    """


async def test_missing_${c}_${n}(client: AsyncClient) -> None:
    response = await client.get("/${D}/${P}/999999")
    assert response.status_code == 404
    assert response.json()["detail"] == "${c} not found"
""",
)

MIGRATION = '''
"""${msg}

Revision ID: ${rev}
Revises: ${prev}
Create Date: 2024-${mm}-${dd} 10:${mi}:00
"""

import sqlalchemy as sa
from alembic import op

revision = "${rev}"
down_revision = ${prevq}
branch_labels = None
depends_on = None


def upgrade() -> None:
${up}


def downgrade() -> None:
${down}
'''

CORE_FILES = {
    "app/__init__.py": '"""The example service."""\n',
    "app/core/__init__.py": "",
    "app/core/models.py": '''
"""Declarative base and shared mixins."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    updated_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), onupdate=func.now(), nullable=True
    )
    version: Mapped[int] = mapped_column(default=1)
''',
    "app/core/db.py": '''
"""Engine, session factory and the request-scoped session dependency."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import settings

engine = create_async_engine(
    settings.database_url,
    pool_size=settings.pool_size,
    max_overflow=10,
    pool_pre_ping=True,
    echo=settings.debug,
)
async_session = async_sessionmaker(engine, expire_on_commit=False)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with async_session() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise


SessionDep = Annotated[AsyncSession, Depends(get_session)]
''',
    "app/core/config.py": '''
"""Settings from the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, PostgresDsn
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APP_", env_file=".env", extra="ignore")

    database_url: str = "postgresql+asyncpg://app:app@localhost:5432/app"
    replica_url: PostgresDsn | None = None
    pool_size: int = Field(default=20, ge=1, le=200)
    debug: bool = False
    secret_key: str = "change-me"
    token_ttl_seconds: int = 3600
    allowed_origins: list[str] = Field(default_factory=lambda: ["http://localhost:3000"])


@lru_cache
def get_settings() -> Settings:
    return Settings()


settings = get_settings()
''',
    "app/core/deps.py": '''
"""Shared FastAPI dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, status
from pydantic import BaseModel

from app.core.db import SessionDep


class User(BaseModel):
    id: int
    organization_id: int
    is_admin: bool = False


async def get_current_user(session: SessionDep, authorization: str = Header(...)) -> User:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED)
    row = await session.execute(
        __import__("sqlalchemy").text("select id, organization_id, is_admin from users where token = :t"),
        {"t": token},
    )
    found = row.first()
    if found is None:
        raise HTTPException(status_code=status.HTTP_401_UNAUTHORIZED)
    return User(id=found[0], organization_id=found[1], is_admin=found[2])


CurrentUser = Annotated[User, Depends(get_current_user)]
''',
    "app/core/http.py": '''
"""A small HTTP client for partner APIs (no database access)."""

from __future__ import annotations

from typing import Any

import httpx


class ExternalClient:
    def __init__(self, base_url: str, token: str, timeout: float = 5.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )

    async def _get(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self._client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    async def fetch_profile(self, name: str) -> dict[str, Any]:
        return await self._get("/profiles", name=name)

    async def fetch_limits(self, organization_id: int) -> dict[str, Any]:
        return await self._get(f"/organizations/{organization_id}/limits")

    async def fetch_rates(self, currency: str) -> dict[str, Any]:
        return await self._get("/rates", base=currency)

    async def aclose(self) -> None:
        await self._client.aclose()
''',
}


# ---------------------------------------------------------------------------- generator
class Generator:
    def __init__(self, out: Path, seed: int) -> None:
        self.out = out
        self.rng = random.Random(seed)
        self.files: dict[str, str] = {}
        self.counter = 0
        self.routers: list[str] = []

    def uid(self) -> int:
        self.counter += 1
        return self.counter

    def size(self, median: int, low: int = 30, high: int = 1500) -> int:
        return max(low, min(high, int(self.rng.lognormvariate(math.log(median), 0.6))))

    def add(self, path: str, lines: list[str]) -> None:
        self.files[path] = "\n".join(lines).rstrip("\n") + "\n"

    def fill(self, head: list[str], target: int, block: Callable[[], list[str]]) -> list[str]:
        lines = list(head)
        while len(lines) < target:
            lines.extend(block())
        return lines

    # ------------------------------------------------------------ kinds
    def entity(self, domain: str, snake: str) -> Entity:
        extra = self.rng.sample(FIELDS, self.rng.randint(3, 10))
        return Entity(domain, snake, [*BASE_FIELDS, *extra])

    def model(self, e: Entity) -> list[str]:
        lines = render(MODEL_HEADER, e.subs())
        target = self.size(90, 40, 600)
        suffixes = list(SUFFIXES)
        while len(lines) < target and suffixes:
            suffix = suffixes.pop(0)
            name = e.cls + suffix
            table = e.table if not suffix else f"{e.table[:-1]}_{suffix.lower()}s"
            doc = f"A {e.snake.replace('_', ' ')}{' ' + suffix.lower() if suffix else ''}."
            lines += render(MODEL_CLASS_HEAD, {"K": name, "tbl": table, "doc": doc})
            for fname, annotation, column, _sample, _kind in e.fields:
                nullable = "True" if "None" in annotation else "False"
                lines.append(
                    f"    {fname}: Mapped[{annotation}] = mapped_column({column}, nullable={nullable})"
                )
            lines += render(MODEL_CLASS_TAIL, {"K": name, "tbl": table})
        return lines

    def schema(self, e: Entity) -> list[str]:
        lines = render(SCHEMA_HEADER, e.subs())
        target = self.size(100, 40, 600)
        for suffix in SUFFIXES:
            if len(lines) >= target:
                break
            fields = []
            optional = []
            for fname, annotation, _column, sample, kind in e.fields:
                if kind == "str" and "None" not in annotation:
                    fields.append(
                        f"    {fname}: {annotation} = Field(min_length=1, examples=[{sample}])"
                    )
                elif kind == "json":
                    fields.append(f"    {fname}: {annotation} = Field(default_factory=dict)")
                else:
                    default = " = None" if "None" in annotation else ""
                    fields.append(f"    {fname}: {annotation}{default}")
                base = annotation.replace(" | None", "")
                optional.append(f"    {fname}: {base} | None = None")
            values = {
                "K": e.cls + suffix,
                "fields": "\n".join(fields),
                "optional": "\n".join(optional),
            }
            lines += render(SCHEMA_BLOCK, values)
        return lines

    def repository(self, e: Entity) -> list[str]:
        strings = [f for f in e.fields if f[4] == "str"]

        def method() -> list[str]:
            field = self.rng.choice(e.fields)
            text = self.rng.choice(strings)
            values = e.subs(
                f=field[0],
                t=field[1],
                s=text[0],
                n=self.uid(),
                b=self.rng.choice(("True", "False")),
                st=self.rng.choice(STATUSES),
            )
            if field[4] == "json" or field[0] == "version":  # no JSON filters, no `version=` twice
                values["f"], values["t"] = "status", "str"
            return ["", *render(self.rng.choice(REPO_METHODS), values)]

        lines = render(REPO_HEADER, e.subs())
        # get_by_name is what the service uses.
        lines += ["", *render(REPO_METHODS[0], e.subs(f="name", t="str"))]
        return self.fill(lines, self.size(170, 80, 900), method)

    def service(self, e: Entity) -> list[str]:
        def method() -> list[str]:
            values = e.subs(
                n=self.uid(),
                cur=self.rng.choice(("EUR", "USD", "GBP")),
                days=self.rng.randint(7, 120),
            )
            return ["", *render(self.rng.choice(SERVICE_METHODS), values)]

        lines = self.fill(render(SERVICE_HEADER, e.subs()), self.size(200, 90, 1000), method)
        roll = self.rng.random()
        if roll < 0.25:
            lines += render(SERVICE_GATHER_OK, e.subs(n=self.uid()))
        elif roll < 0.27:
            lines += render(SERVICE_GATHER_BUG, e.subs(n=self.uid()))
        return lines

    def router(self, e: Entity) -> list[str]:
        def endpoint() -> list[str]:
            values = e.subs(
                n=self.uid(),
                act=self.rng.choice(("activate", "pause", "archive", "retry", "approve")),
                st=self.rng.choice(STATUSES),
            )
            return render(self.rng.choice(ROUTER_ENDPOINTS), values)

        return self.fill(render(ROUTER_HEADER, e.subs()), self.size(180, 90, 900), endpoint)

    def tasks(self, e: Entity, buggy: bool) -> list[str]:
        def block() -> list[str]:
            return render(self.rng.choice(TASK_BLOCKS_OK), e.subs(n=self.uid()))

        lines = self.fill(render(TASKS_HEADER, e.subs()), self.size(140, 60, 500), block)
        if buggy:
            lines += render(self.rng.choice(TASK_BLOCKS_BUG), e.subs(n=self.uid()))
        return lines

    def util(self, doc: str) -> list[str]:
        def block() -> list[str]:
            values = {
                "n": self.uid(),
                "ml": self.rng.randint(40, 120),
                "cur": self.rng.choice(("EUR", "USD", "GBP")),
                "att": self.rng.randint(2, 6),
            }
            return render(self.rng.choice(UTIL_BLOCKS), values)

        return self.fill(render(UTIL_HEADER, {"doc": doc}), self.size(110, 40, 800), block)

    def test(self, e: Entity) -> list[str]:
        def block() -> list[str]:
            return render(self.rng.choice(TEST_BLOCKS), e.subs(n=self.uid()))

        return self.fill(render(TEST_HEADER, e.subs()), self.size(150, 50, 700), block)

    def migration(self, index: int, entities: list[Entity]) -> list[str]:
        up: list[str] = []
        down: list[str] = []
        target = self.size(70, 30, 400)
        while len(up) + 20 < target:
            e = self.rng.choice(entities)
            columns = [
                f'        sa.Column("{name}", sa.{column.split("(")[0]}(), nullable={"None" in annotation}),'
                for name, annotation, column, _s, _k in e.fields
            ]
            table = f"{e.table}_v{index}"
            up += [
                "    op.create_table(",
                f'        "{table}",',
                '        sa.Column("id", sa.Integer(), primary_key=True),',
                *columns,
                '        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),',
                "    )",
                f'    op.create_index("ix_{table}_status", "{table}", ["status"])',
            ]
            down.insert(0, f'    op.drop_table("{table}")')
            down.insert(0, f'    op.drop_index("ix_{table}_status", table_name="{table}")')
        rev = f"{self.rng.getrandbits(48):012x}"
        prev = getattr(self, "_last_rev", None)
        self._last_rev = rev
        values = {
            "msg": f"migration {index}",
            "rev": rev,
            "prev": prev or "",
            "prevq": f'"{prev}"' if prev else "None",
            "mm": f"{1 + index % 12:02d}",
            "dd": f"{1 + index % 28:02d}",
            "mi": f"{index % 60:02d}",
            "up": "\n".join(up) or "    pass",
            "down": "\n".join(down) or "    pass",
        }
        return render(MIGRATION, values)

    def worst_file(self, entities: list[Entity]) -> list[str]:
        """One ~10,000-line legacy module: repositories, services and endpoints all in one."""
        lines = [
            '"""Legacy admin console: everything in one module (the largest file)."""',
            "",
            "from __future__ import annotations",
            "",
            "import asyncio",
            "import logging",
            "from collections.abc import Iterable, Sequence",
            "from datetime import datetime",
            "from typing import Annotated, Any",
            "",
            "from fastapi import APIRouter, Depends, HTTPException, Query, status",
            "from sqlalchemy import delete, func, or_, select, update",
            "from sqlalchemy.ext.asyncio import AsyncSession",
            "from sqlalchemy.orm import selectinload",
            "",
            "from app.core.db import SessionDep, async_session, get_session",
            "from app.core.deps import CurrentUser",
            "",
            "logger = logging.getLogger(__name__)",
            "router = APIRouter(prefix='/admin', tags=['admin'])",
        ]
        index = 0
        while len(lines) < 10_000:
            e = entities[index % len(entities)]
            index += 1
            repo = self.repository(e)
            body = repo[repo.index(f"class {e.cls}Repository:") :]
            lines += [
                "",
                "",
                *[
                    x.replace(f"class {e.cls}Repository:", f"class Admin{e.cls}{index}Repository:")
                    for x in body
                ],
            ]
            for _ in range(3):
                endpoint = render(
                    self.rng.choice(ROUTER_ENDPOINTS),
                    e.subs(n=self.uid(), act="approve", st="active"),
                )
                lines += [
                    x.replace(f"{e.cls}Service(", f"Admin{e.cls}{index}Repository(").replace(
                        ".repository", ""
                    )
                    for x in endpoint
                ]
            if index % 7 == 0:
                lines += render(SERVICE_GATHER_OK, e.subs(n=self.uid()))
        return lines

    # ------------------------------------------------------------ the whole tree
    def generate(self) -> None:
        for path, text in CORE_FILES.items():
            self.files[path] = text.lstrip("\n")
        nouns = list(NOUNS)
        all_entities: list[Entity] = []
        for domain in DOMAINS:
            chosen = self.rng.sample(nouns, self.rng.randint(11, 15))
            entities = [self.entity(domain, noun) for noun in sorted(chosen)]
            all_entities += entities
            base = f"app/{domain}"
            for package in (
                "",
                "/models",
                "/schemas",
                "/repositories",
                "/services",
                "/routers",
                "/utils",
                "/tasks",
            ):
                exports = []
                if package in ("/models", "/schemas"):
                    exports = [
                        f"from {base.replace('/', '.')}{package.replace('/', '.')}.{e.snake} import *  # noqa: F403"
                        for e in entities
                    ]
                self.add(
                    f"{base}{package}/__init__.py",
                    [f'"""{domain}{package.replace("/", ".")}."""', *exports],
                )
            exceptions = ['"""Domain errors."""', "", "from __future__ import annotations"]
            for e in entities:
                exceptions += [
                    "",
                    "",
                    f"class {e.cls}NotFound(LookupError):",
                    "    def __init__(self, item_id: int) -> None:",
                    f'        super().__init__(f"{e.snake} {{item_id}} not found")',
                    "        self.item_id = item_id",
                    "",
                    "",
                    f"class {e.cls}Conflict(ValueError):",
                    "    pass",
                ]
            self.add(f"{base}/exceptions.py", exceptions)
            for e in entities:
                self.add(f"{base}/models/{e.snake}.py", self.model(e))
                self.add(f"{base}/schemas/{e.snake}.py", self.schema(e))
                self.add(f"{base}/repositories/{e.snake}.py", self.repository(e))
                self.add(f"{base}/services/{e.snake}.py", self.service(e))
                self.add(f"{base}/routers/{e.snake}.py", self.router(e))
                self.routers.append(f"app.{domain}.routers.{e.snake}")
                if self.rng.random() < 0.45:
                    self.add(f"tests/{domain}/test_{e.snake}_api.py", self.test(e))
            for i in range(self.rng.randint(6, 10)):
                topic = self.rng.choice(
                    (
                        "text",
                        "dates",
                        "money",
                        "collections",
                        "formatting",
                        "validation",
                        "retry",
                        "enums",
                    )
                )
                self.add(f"{base}/utils/{topic}_{i}.py", self.util(f"{domain}: {topic} helpers"))
            for i, e in enumerate(self.rng.sample(entities, self.rng.randint(1, 3))):
                buggy = self.rng.random() < 0.25
                self.add(f"{base}/tasks/{e.snake}_jobs_{i}.py", self.tasks(e, buggy))
        for i in range(260):
            self.add(f"migrations/versions/{i:04d}_auto.py", self.migration(i, all_entities))
        for i in range(8):
            e = self.rng.choice(all_entities)
            module_session = i in (2, 5)  # BUG (AG101) in two scripts
            lines = [
                f'"""Backfill script {i}."""',
                "",
                "import asyncio",
                "",
                "from sqlalchemy import select",
                "",
                "from app.core.db import async_session",
                f"from app.{e.domain}.models.{e.snake} import {e.cls}",
                "",
            ]
            if module_session:
                lines += ["session = async_session()", "", "", "async def main() -> None:"]
            else:
                lines += [
                    "",
                    "async def main() -> None:",
                    "    async with async_session() as session:",
                ]
            indent = "    " if module_session else "        "
            lines += [
                f"{indent}rows = await session.scalars(select({e.cls}).where({e.cls}.status == 'draft'))",
                f"{indent}for row in rows:",
                f"{indent}    row.status = 'active'",
                f"{indent}await session.commit()",
                "",
                "",
                'if __name__ == "__main__":',
                "    asyncio.run(main())",
            ]
            self.add(f"scripts/backfill_{i}.py", lines)
        main = [
            '"""Application entry point."""',
            "",
            "from fastapi import FastAPI",
            "",
            *[f"from {m} import router as {m.replace('.', '_')}" for m in self.routers],
            "",
            'app = FastAPI(title="Example")',
            *[f"app.include_router({m.replace('.', '_')})" for m in self.routers],
        ]
        self.add("app/main.py", main)
        self.add("app/legacy/__init__.py", ['"""Legacy code."""'])
        self.add("app/legacy/admin_console.py", self.worst_file(all_entities))

    def write(self, check: bool) -> tuple[int, int]:
        if self.out.exists():
            shutil.rmtree(self.out)
        lines = 0
        for path in sorted(self.files):
            text = self.files[path]
            if check:
                compile(text, path, "exec", dont_inherit=True)
            target = self.out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            lines += text.count("\n")
        return len(self.files), lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (replaced)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--no-check", action="store_true", help="skip compiling every file")
    args = parser.parse_args()
    generator = Generator(args.out, args.seed)
    generator.generate()
    files, lines = generator.write(check=not args.no_check)
    print(f"wrote {files} files, {lines} lines to {args.out}")


if __name__ == "__main__":
    main()
