"""A demonstration's evidence pack: what a company takes to procurement, frozen when the
demonstration ends, kept outside the aggregates' retention, and checkable by anyone holding the
hub's public key.

The pack is a zip of:

    scorecard.json      the scorecard as it stood when frozen (each KPI version and its verdicts)
    kpi_versions.csv    every definition of each KPI, its period, who changed it and why
    kpi_results.csv     every judged window at every site, with the version it was judged by
    aggregates.csv      the minute aggregates of its devices over its whole period
    registry.json       the registry rows that applied: the demonstration, its KPIs, devices, sites
    manifest.json       the SHA-256 of each file above, the demonstration and when it was frozen
    manifest.sig        the Ed25519 signature of manifest.json under the hub's key

Minute aggregates are kept 14 days; a demonstration runs for months. So upkeep copies the
minutes older than their retention into ``evidence_aggregates`` before dropping them
(``keep_for_evidence``), and freezing copies the rest: the pack holds the whole period. Signing
uses the ``cryptography`` package's Ed25519; the hub's private key lives in ``hub_keys``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.db import Connection
from hub.errors import HubError
from hub.management.scorecard import build_scorecard

FILES: Final = (
    "scorecard.json",
    "kpi_versions.csv",
    "kpi_results.csv",
    "aggregates.csv",
    "registry.json",
)
MANIFEST: Final = "manifest.json"
SIGNATURE: Final = "manifest.sig"
KEY_NAME: Final = "evidence"


class EvidenceError(HubError):
    """A pack that cannot be made (the demonstration has not ended) or read."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The check of a pack: sound, or the first thing that does not match."""

    sound: bool
    detail: str


# -- the hub's signing key ----------------------------------------------------------------------


async def signing_key(conn: Connection) -> Ed25519PrivateKey:
    """The hub's Ed25519 key, made on first use (kept in ``hub_keys``; only its public half
    ever leaves the database)."""
    raw = await conn.fetchval("SELECT secret FROM hub_keys WHERE name = $1", KEY_NAME)
    if raw is None:
        made = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        await conn.execute(
            "INSERT INTO hub_keys (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            KEY_NAME,
            made,
        )
        raw = await conn.fetchval("SELECT secret FROM hub_keys WHERE name = $1", KEY_NAME)
    return Ed25519PrivateKey.from_private_bytes(bytes(raw))


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public(pem: str | bytes) -> Ed25519PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise EvidenceError(f"not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceError("not an Ed25519 public key")
    return key


# -- keeping the minutes -------------------------------------------------------------------------


async def keep_for_evidence(conn: Connection, before: datetime) -> int:
    """Minute aggregates older than ``before`` (about to be dropped by retention) copied to
    ``evidence_aggregates``; returns how many rows were new there."""
    status = await conn.execute(
        """INSERT INTO evidence_aggregates
           SELECT a.bucket, a.site_id, a.demonstration_id, a.metric, a.count, a.sum, a.min,
                  a.max, a.p50, a.p95, a.p99
             FROM site_aggregates a
            WHERE a.bucket < $1 AND a.demonstration_id <> ''
           ON CONFLICT DO NOTHING""",
        before,
    )
    return int(status.split()[-1])


# -- freezing -------------------------------------------------------------------------------------


async def freeze(conn: Connection, demonstration_id: str) -> bytes:
    """The demonstration's pack, made once when it has ended (the same bytes every later
    time); raises EvidenceError for one still running."""
    stored = await conn.fetchval(
        "SELECT archive FROM evidence_packs WHERE demonstration_id = $1", demonstration_id
    )
    if stored is not None:
        return bytes(stored)
    status = await conn.fetchval(
        "SELECT status FROM demonstration_status WHERE demonstration_id = $1", demonstration_id
    )
    if status is None:
        raise EvidenceError(f"no demonstration {demonstration_id!r}")
    if status not in ("ended", "archived"):
        raise EvidenceError(
            f"{demonstration_id} is {status}: its evidence is frozen when it ends "
            f"(hub demonstrations end {demonstration_id})"
        )
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO evidence_aggregates
               SELECT a.bucket, a.site_id, a.demonstration_id, a.metric, a.count, a.sum, a.min,
                      a.max, a.p50, a.p95, a.p99
                 FROM site_aggregates a JOIN demonstration_status s USING (demonstration_id)
                WHERE a.demonstration_id = $1
                  AND a.bucket >= s.period_start AND a.bucket < s.period_end
               ON CONFLICT DO NOTHING""",
            demonstration_id,
        )
        files = await _files(conn, demonstration_id)
        frozen_at = await conn.fetchval("SELECT now()")
        key = await signing_key(conn)
        archive = pack(demonstration_id, files, key, frozen_at)
        await conn.execute(
            "INSERT INTO evidence_packs (demonstration_id, frozen_at, archive, sha256) "
            "VALUES ($1, $2, $3, $4)",
            demonstration_id,
            frozen_at,
            archive,
            hashlib.sha256(archive).hexdigest(),
        )
    return archive


async def preview(conn: Connection, demonstration_id: str) -> bytes:
    """The pack the demonstration would get were it to end now (not kept, not for procurement:
    a figure for `hub demo`)."""
    files = await _files(conn, demonstration_id)
    return pack(
        demonstration_id, files, await signing_key(conn), await conn.fetchval("SELECT now()")
    )


async def freeze_ended(conn: Connection) -> list[str]:
    """Every demonstration that has ended without a pack gets one (upkeep)."""
    due = await conn.fetch(
        """SELECT s.demonstration_id FROM demonstration_status s
            WHERE s.status IN ('ended', 'archived')
              AND NOT EXISTS (SELECT 1 FROM evidence_packs p
                               WHERE p.demonstration_id = s.demonstration_id)
            ORDER BY 1"""
    )
    frozen = []
    for row in due:
        await freeze(conn, row["demonstration_id"])
        frozen.append(row["demonstration_id"])
    return frozen


def pack(
    demonstration_id: str, files: dict[str, bytes], key: Ed25519PrivateKey, frozen_at: datetime
) -> bytes:
    """The zip: ``files``, their manifest and its signature. Deterministic for given inputs."""
    manifest = json.dumps(
        {
            "demonstration_id": demonstration_id,
            "frozen_at": frozen_at.isoformat(),
            "algorithm": "sha256",
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
            "signature": "Ed25519 over this file's bytes, in manifest.sig",
        },
        indent=2,
        sort_keys=True,
    ).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in (*files.items(), (MANIFEST, manifest)):
            info = zipfile.ZipInfo(name, date_time=frozen_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        info = zipfile.ZipInfo(SIGNATURE, date_time=frozen_at.timetuple()[:6])
        archive.writestr(info, key.sign(manifest))
    return out.getvalue()


def verify(archive: bytes, public_key: Ed25519PublicKey) -> Verdict:
    """The manifest's signature under ``public_key``, then every file's digest: sound, or the
    first file that does not match (a file missing or added counts)."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            contents = {name: opened.read(name) for name in opened.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        return Verdict(False, f"not a zip archive ({error})")
    manifest = contents.pop(MANIFEST, None)
    signature = contents.pop(SIGNATURE, None)
    if manifest is None or signature is None:
        return Verdict(False, f"{MANIFEST if manifest is None else SIGNATURE}: missing")
    try:
        public_key.verify(signature, manifest)
    except InvalidSignature:
        return Verdict(False, f"{MANIFEST}: its signature does not match the hub's public key")
    listed: dict[str, str] = json.loads(manifest)["files"]
    for name, digest in listed.items():
        data = contents.get(name)
        if data is None:
            return Verdict(False, f"{name}: missing")
        if hashlib.sha256(data).hexdigest() != digest:
            return Verdict(False, f"{name}: its SHA-256 does not match the manifest")
    extra = sorted(set(contents) - set(listed))
    if extra:
        return Verdict(False, f"{extra[0]}: not in the manifest")
    return Verdict(True, f"sound: {len(listed)} files match the signed manifest")


# -- the files ------------------------------------------------------------------------------------


async def _files(conn: Connection, demonstration_id: str) -> dict[str, bytes]:
    card = await build_scorecard(conn, demonstration_id)
    versions = await conn.fetch(
        """SELECT kpi_id, version, CASE WHEN isfinite(valid_from) THEN valid_from END
                  AS valid_from, valid_until, threshold, min_samples, metric, aggregation, op,
                  "window", reason, changed_by, changed_at
             FROM kpi_versions WHERE demonstration_id = $1 ORDER BY kpi_id, version""",
        demonstration_id,
    )
    results = await conn.fetch(
        """SELECT r.window_start, r.window_end, r.site_id, r.kpi_id, r.kpi_version, r.value,
                  r.threshold, r.status, r.samples
             FROM kpi_results r JOIN demonstration_status s USING (demonstration_id)
            WHERE r.demonstration_id = $1 AND r.attributable
              AND r.window_start >= s.period_start AND r.window_end <= s.period_end
            ORDER BY r.kpi_id, r.site_id, r.window_start""",
        demonstration_id,
    )
    # The minutes kept as evidence, and those still in site_aggregates (a preview, or rows
    # written since the copy), over its period.
    aggregates = await conn.fetch(
        """SELECT bucket, site_id, metric, count, sum, min, max, p50, p95, p99
             FROM evidence_aggregates WHERE demonstration_id = $1
           UNION ALL
           SELECT a.bucket, a.site_id, a.metric, a.count, a.sum, a.min, a.max, a.p50, a.p95,
                  a.p99
             FROM site_aggregates a JOIN demonstration_status s USING (demonstration_id)
            WHERE a.demonstration_id = $1
              AND a.bucket >= s.period_start AND a.bucket < s.period_end
              AND NOT EXISTS (SELECT 1 FROM evidence_aggregates e
                               WHERE e.demonstration_id = a.demonstration_id
                                 AND e.site_id = a.site_id AND e.metric = a.metric
                                 AND e.bucket = a.bucket)
            ORDER BY site_id, metric, bucket""",
        demonstration_id,
    )
    registry = {
        "demonstration": _plain(
            await conn.fetchrow(
                """SELECT demonstration_id, company, title, technology, starts_on, ends_on,
                          metrics, status, applied_at, decided_at, ended_at
                     FROM demonstrations WHERE demonstration_id = $1""",
                demonstration_id,
            )
        ),
        "kpis": [
            _plain(r)
            for r in await conn.fetch(
                "SELECT * FROM kpis WHERE demonstration_id = $1 ORDER BY kpi_id", demonstration_id
            )
        ],
        "devices": [
            _plain(r)
            for r in await conn.fetch(
                "SELECT device_id, site_id, model FROM devices WHERE demonstration_id = $1 "
                "ORDER BY device_id",
                demonstration_id,
            )
        ],
        "sites": [
            _plain(r)
            for r in await conn.fetch(
                """SELECT s.site_id, s.region, s.district, s.place_type, s.name, s.lat, s.lon
                     FROM sites s WHERE s.site_id IN
                          (SELECT site_id FROM devices WHERE demonstration_id = $1)
                    ORDER BY s.site_id""",
                demonstration_id,
            )
        ],
    }
    return {
        "scorecard.json": card.model_dump_json(indent=2).encode(),
        "kpi_versions.csv": _csv(versions),
        "kpi_results.csv": _csv(results),
        "aggregates.csv": _csv(aggregates),
        "registry.json": json.dumps(registry, indent=2, default=str, sort_keys=True).encode(),
    }


def _plain(row: Any) -> dict[str, Any]:
    return {} if row is None else dict(row)


def _csv(rows: list[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if rows:
        writer.writerow(rows[0].keys())
    for row in rows:
        writer.writerow(
            "" if v is None else v.isoformat() if hasattr(v, "isoformat") else v
            for v in row.values()
        )
    return out.getvalue().encode()
