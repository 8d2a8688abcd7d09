"""``/dead-letters``: inbound messages the collector rejected, and why."""

from __future__ import annotations

import codecs
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import LargeBinary, func, select

from semon.api.auth import AccessDep
from semon.api.deps import Limit, Offset
from semon.api.listing import Sortable, page
from semon.api.openapi import problem_responses
from semon.api.schemas import DeadLetterOut, DeadLetterPage, DeadLetterSummary, ReasonCount
from semon.store.models import DeadLetter

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])

PAYLOAD_PREVIEW_BYTES = 2048


def payload_text(head: bytes) -> str:
    """UTF-8 text of a payload prefix; invalid bytes become U+FFFD.

    The prefix may end inside a multi-byte character; an incremental decoder that is not told
    the input is final leaves that fragment out instead of showing a spurious replacement char.
    """
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(head, final=False)


@router.get(
    "", response_model=DeadLetterPage, summary="List dead letters", responses=problem_responses()
)
def list_dead_letters(
    access: AccessDep,
    reason: Annotated[
        str | None, Query(description="rejection reason", examples=["schema"])
    ] = None,
    device_id: Annotated[str | None, Query(examples=["EL-0001"])] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DeadLetterPage:
    """Rejected messages, newest first; payloads shown as text, cut to 2 KiB."""
    # Only the preview leaves the database: payloads can be up to the ingest size limit each.
    head = func.substr(DeadLetter.payload, 1, PAYLOAD_PREVIEW_BYTES, type_=LargeBinary)
    stored = func.length(DeadLetter.payload)
    stmt = select(
        DeadLetter.id,
        DeadLetter.received_at,
        DeadLetter.topic,
        DeadLetter.reason,
        DeadLetter.detail,
        DeadLetter.device_id,
        DeadLetter.payload_size,
        head.label("head"),
        stored.label("stored"),
    )
    stmt = access.scoped(stmt, DeadLetter.device_id)
    if reason is not None:
        stmt = stmt.where(DeadLetter.reason == reason)
    if device_id is not None:
        stmt = stmt.where(DeadLetter.device_id == device_id)
    order: list[Sortable] = [DeadLetter.received_at.desc(), DeadLetter.id.desc()]
    total, rows = page(access.s, stmt, order, limit, offset)
    items = [
        DeadLetterOut(
            id=r.id,
            received_at=r.received_at,
            topic=r.topic,
            reason=r.reason,
            detail=r.detail,
            device_id=r.device_id,
            payload=payload_text(bytes(r.head or b"")),
            payload_size=r.payload_size,
            # The collector may itself have kept only a prefix of an oversized message, so
            # compare what was sent with what is shown, not just with the preview size.
            payload_truncated=max(r.payload_size, r.stored or 0)
            > min(r.stored or 0, PAYLOAD_PREVIEW_BYTES),
        )
        for r in rows
    ]
    return DeadLetterPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/summary",
    response_model=DeadLetterSummary,
    summary="Dead-letter counts by reason",
    responses=problem_responses(),
)
def dead_letter_summary(
    access: AccessDep, device_id: Annotated[str | None, Query(description="only this device")] = None
) -> DeadLetterSummary:
    """How many messages were rejected for each reason, and when the latest one was."""
    n = func.count().label("n")
    last = func.max(DeadLetter.received_at)
    stmt = access.scoped(select(DeadLetter.reason, n, last), DeadLetter.device_id).group_by(DeadLetter.reason)
    if device_id is not None:
        stmt = stmt.where(DeadLetter.device_id == device_id)
    rows = access.s.execute(stmt.order_by(n.desc(), DeadLetter.reason)).all()
    by_reason = [ReasonCount(reason=r, count=c, last_received_at=last) for r, c, last in rows]
    return DeadLetterSummary(total=sum(x.count for x in by_reason), by_reason=by_reason)
