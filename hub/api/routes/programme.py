"""The programme over HTTP: applications (an operator, or a company for itself), decisions and
early ends (operators), and the audit trail (operators)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.responses import JSONResponse, Response

from hub import audit, evidence
from hub.api import models
from hub.api.auth import EVIDENCE_ROLES, forbid_unless
from hub.api.deps import NOT_FOUND, UNAUTHORIZED, UNREADABLE_BODY, Conn, Id, Who
from hub.api.routes.demonstrations import visible_demonstration
from hub.programme import application, store
from hub.tokens import Principal

router = APIRouter()
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": models.ErrorBody, "description": "not in a state that allows this step"}
}
REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": models.Problems, "description": "the application, every problem named"}
}


def actor(who: Principal) -> str:
    return f"token:{who.name}"


@router.post(
    "/api/v1/demonstrations",
    status_code=201,
    response_model=models.Applied,
    responses={**UNAUTHORIZED, **UNREADABLE_BODY, **REFUSED},
    tags=["programme"],
)
async def apply(
    conn: Conn,
    who: Who,
    document: Annotated[dict[str, Any], Body(description="the application (as the CLI's file)")],
) -> Any:
    """An application, checked whole: 201 and the demonstration as applied, or 422 naming every
    problem. A company token may apply for its own company only."""
    forbid_unless(who, "operator", "company")
    try:
        checked = application.check(document, await store.known(conn), who.company)
        await store.apply(conn, checked, actor(who))
    except application.ApplicationError as refused:
        return JSONResponse({"detail": refused.problems}, status_code=422)
    except store.ProgrammeError as error:
        raise HTTPException(409, str(error)) from None
    demo = checked.demonstration
    return {
        "demonstration_id": demo.demonstration_id,
        "status": "applied",
        "sites": len(checked.sites),
        "devices": len(checked.devices),
    }


@router.post(
    "/api/v1/demonstrations/{demonstration_id}/approve",
    response_model=models.Decided,
    responses={**NOT_FOUND, **UNAUTHORIZED, **CONFLICT},
    tags=["programme"],
)
async def approve(conn: Conn, who: Who, demonstration_id: Id) -> dict[str, Any]:
    """Approve an application: its devices are registered. Operators only."""
    forbid_unless(who, "operator")
    devices = await _step(store.approve(conn, demonstration_id, actor(who)))
    return {"demonstration_id": demonstration_id, "status": "approved", "devices": devices}


@router.post(
    "/api/v1/demonstrations/{demonstration_id}/reject",
    response_model=models.Decided,
    responses={**NOT_FOUND, **UNAUTHORIZED, **CONFLICT, **UNREADABLE_BODY},
    tags=["programme"],
)
async def reject(
    conn: Conn, who: Who, demonstration_id: Id, body: models.Reason | None = None
) -> dict[str, Any]:
    """Reject an application (kept, as rejected). Operators only."""
    forbid_unless(who, "operator")
    reason = body.reason if body is not None else ""
    await _step(store.reject(conn, demonstration_id, actor(who), reason))
    return {"demonstration_id": demonstration_id, "status": "rejected", "devices": 0}


@router.post(
    "/api/v1/demonstrations/{demonstration_id}/end",
    response_model=models.Decided,
    responses={**NOT_FOUND, **UNAUTHORIZED, **CONFLICT},
    tags=["programme"],
)
async def end(conn: Conn, who: Who, demonstration_id: Id) -> dict[str, Any]:
    """End a demonstration now (early): records dated from now on are not counted. Operators
    only."""
    forbid_unless(who, "operator")
    ended = await _step(store.end(conn, demonstration_id, actor(who)))
    await evidence.freeze(conn, demonstration_id)
    return {
        "demonstration_id": demonstration_id,
        "status": "ended",
        "devices": 0,
        "ended_at": ended,
    }


@router.get(
    "/api/v1/demonstrations/{demonstration_id}/evidence",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "the evidence pack"},
        **NOT_FOUND,
        **UNAUTHORIZED,
        **CONFLICT,
    },
    tags=["programme"],
)
async def evidence_pack(conn: Conn, who: Who, demonstration_id: Id) -> Response:
    """An ended demonstration's evidence pack (its company's, procurement's and operators'):
    409 while it runs. Check it with `hub report --verify` and the hub's public key."""
    forbid_unless(who, *EVIDENCE_ROLES)
    await visible_demonstration(conn, who, demonstration_id)
    try:
        archive = await evidence.freeze(conn, demonstration_id)
    except evidence.EvidenceError as error:
        raise HTTPException(409, str(error)) from None
    name = f"{demonstration_id}-evidence.zip"
    return Response(
        archive,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/api/v1/evidence/public-key", response_model=models.PublicKey, tags=["programme"])
async def evidence_public_key(conn: Conn) -> dict[str, str]:
    """The hub's Ed25519 public key: anyone holding it can check an evidence pack. Open."""
    key = (await evidence.signing_key(conn)).public_key()
    return {"algorithm": "Ed25519", "public_key_pem": evidence.public_pem(key)}


async def _step(step: Any) -> Any:
    try:
        return await step
    except store.UnknownDemonstration as error:
        raise HTTPException(404, str(error)) from None
    except store.ProgrammeError as error:
        raise HTTPException(409, str(error)) from None


@router.get(
    "/api/v1/audit",
    response_model=list[models.AuditEntry],
    responses=UNAUTHORIZED,
    tags=["programme"],
)
async def audit_trail(
    conn: Conn,
    who: Who,
    since: Annotated[
        datetime | None, Query(description="only changes from then on (ISO 8601 with a zone)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="most entries answered")] = 1000,
) -> list[dict[str, Any]]:
    """Who changed what, when, before and after, oldest first. Operators only."""
    forbid_unless(who, "operator")
    if since is not None and since.tzinfo is None:
        raise HTTPException(422, "since: give a time zone (Z or +09:00)")
    return await audit.entries(conn, since, limit)
