"""``/keys``: API keys, managed by the regulator."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from semon.api.auth import RegulatorDep
from semon.api.deps import DbDep
from semon.api.openapi import problem_responses
from semon.api.problems import ProblemException, not_found
from semon.api.schemas import UtcDatetime
from semon.store.keys import KeyError_, create_key, list_keys, revoke_key
from semon.store.models import ApiKey

router = APIRouter(prefix="/keys", tags=["keys"])


class KeyIn(BaseModel):
    """A key to create."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "f001-dispatch", "role": "firm", "firm_id": "F001"}]}
    )
    name: str = Field(min_length=1, max_length=64)
    role: Literal["regulator", "firm", "owner"]
    firm_id: str | None = Field(None, max_length=64)
    use_unit_id: str | None = Field(None, max_length=64)


class KeyOut(BaseModel):
    """A key as listed (the secret is never shown again)."""

    model_config = ConfigDict(from_attributes=True)
    id: int
    prefix: str
    name: str
    role: str
    firm_id: str | None
    use_unit_id: str | None
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None


class KeyCreated(KeyOut):
    """A new key, with its token — shown once."""

    token: str = Field(description="send as Authorization: Bearer <token>; not stored, not shown again")


@router.post(
    "",
    response_model=KeyCreated,
    status_code=201,
    summary="Create a key",
    operation_id="create_key",
    responses=problem_responses({403: "not the regulator", 422: "bad scope"}),
)
def create(db: DbDep, _: RegulatorDep, body: KeyIn) -> KeyCreated:
    """Create a key for a firm, an owner or the regulator."""
    try:
        k, token = create_key(db, body.name, body.role, firm_id=body.firm_id, use_unit_id=body.use_unit_id)
    except KeyError_ as e:
        raise ProblemException(422, str(e), slug="invalid-key-scope", title="Invalid key scope") from e
    return KeyCreated(**KeyOut.model_validate(k).model_dump(), token=token)


@router.get(
    "", response_model=list[KeyOut], summary="List keys", operation_id="list_keys",
    responses=problem_responses({403: "not the regulator"}),
)
def list_(db: DbDep, _: RegulatorDep, include_revoked: bool = False) -> list[KeyOut]:
    """Keys, newest first."""
    return [KeyOut.model_validate(k) for k in list_keys(db, include_revoked=include_revoked)]


@router.delete(
    "/{key_id}",
    response_model=KeyOut,
    summary="Revoke a key",
    operation_id="revoke_key",
    responses=problem_responses({403: "not the regulator", 404: "unknown key"}),
)
def revoke(db: DbDep, _: RegulatorDep, key_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> KeyOut:
    """Revoke a key at once (idempotent)."""
    k: ApiKey | None = revoke_key(db, key_id)
    if k is None:
        raise not_found("key", key_id)
    return KeyOut.model_validate(k)
