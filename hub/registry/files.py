"""Read and check the registry files: every broken entry is named with its file, entry and reason.

Pure: files in, a ``Registry`` or a ``RegistryError`` out. Nothing touches the database until the
whole registry is known to be sound, so a broken edit changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from hub.errors import HubError
from hub.registry.model import (
    AGGREGATIONS,
    DISTRICTS,
    OPS,
    PLACE_TYPES,
    REGIONS,
    WINDOWS,
    Demonstration,
    Device,
    Kpi,
    Placement,
    Registry,
    Site,
)
from hub.telemetry import METRIC_NAME_PATTERN

DATA_DIR = Path(__file__).resolve().parent / "data"
FILES = ("sites.csv", "devices.csv", "demonstrations.yaml")
ID_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,63}$")
REGION_CODE = re.compile(r"^[a-z][a-z0-9]{1,31}$")  # as the regions table checks it
DISTRICT_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_metric_name = re.compile(METRIC_NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    entry: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.entry}: {self.reason}"


class RegistryError(HubError):
    """The registry files are broken; ``problems`` lists each one, the message the first few."""

    def __init__(self, problems: list[Problem]) -> None:
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"registry refused, nothing loaded: {shown}{more}")
        self.problems = problems


def read_registry(directory: Path = DATA_DIR) -> Registry:
    """Parse and cross-check the three files; raise RegistryError listing every problem."""
    problems: list[Problem] = []
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise RegistryError([Problem(str(directory / m), "file", "missing") for m in missing])
    sites = _sites(directory / "sites.csv", problems)
    demonstrations = _demonstrations(directory / "demonstrations.yaml", problems)
    devices = _devices(
        directory / "devices.csv",
        {s.site_id for s in sites},
        {d.demonstration_id for d in demonstrations},
        problems,
    )
    if problems:
        raise RegistryError(problems)
    digest = hashlib.sha256()
    for name in FILES:
        digest.update((directory / name).read_bytes())
    return Registry(tuple(sites), tuple(devices), tuple(demonstrations), digest.hexdigest()[:16])


def read_demonstrations(path: Path) -> list[Demonstration]:
    """The catalogue alone (the registry generator places devices by it)."""
    problems: list[Problem] = []
    demonstrations = _demonstrations(path, problems)
    if problems:
        raise RegistryError(problems)
    return demonstrations


def _rows(
    path: Path, columns: tuple[str, ...], problems: list[Problem]
) -> Iterator[tuple[str, dict[str, str]]]:
    with path.open(newline="") as src:
        reader = csv.DictReader(src)
        absent = [c for c in columns if c not in (reader.fieldnames or [])]
        if absent:
            problems.append(Problem(str(path), "header", f"missing column(s) {', '.join(absent)}"))
            return
        for row in reader:
            yield f"line {reader.line_num}", row


def _sites(path: Path, problems: list[Problem]) -> list[Site]:
    sites: list[Site] = []
    seen: set[str] = set()
    columns = ("site_id", "region", "district", "place_type", "name", "lat", "lon")
    for line, row in _rows(path, columns, problems):
        site_id = row["site_id"] or ""
        entry = f"{line} (site {site_id or '?'})"
        reason = _site_problem(row, seen)
        if reason:
            problems.append(Problem(str(path), entry, reason))
            continue
        seen.add(site_id)
        sites.append(
            Site(
                site_id,
                row["region"],
                row["district"],
                row["place_type"],
                row["name"] or "",
                float(row["lat"]),
                float(row["lon"]),
            )
        )
    return sites


def _site_problem(row: dict[str, str], seen: set[str]) -> str | None:
    site_id, region, district = row["site_id"] or "", row["region"] or "", row["district"] or ""
    if not ID_PATTERN.match(site_id):
        return f"site_id {site_id!r} is not an id (A-Z, 0-9, '-', up to 64)"
    if site_id in seen:
        return f"duplicate site_id {site_id}"
    if not REGION_CODE.match(region):
        return f"region {region!r} is not a region code (a-z, 0-9, 2-32, e.g. {REGIONS[0]})"
    # The founding regions' districts are known; a region added later names its own.
    if region in DISTRICTS and district not in DISTRICTS[region]:
        return f"unknown district {district!r} in {region}"
    if not DISTRICT_CODE.match(district):
        return f"district {district!r} is not a district code (a-z, 0-9, '_')"
    if row["place_type"] not in PLACE_TYPES:
        return f"unknown place_type {row['place_type']!r}"
    try:
        lat, lon = float(row["lat"]), float(row["lon"])
    except (TypeError, ValueError):
        return f"lat/lon {row['lat']!r}, {row['lon']!r} are not numbers"
    if not (33.0 <= lat <= 39.0 and 124.0 <= lon <= 132.0):
        return f"lat/lon {lat}, {lon} lie outside the Korean peninsula's south"
    return None


def _devices(
    path: Path, site_ids: set[str], demo_ids: set[str], problems: list[Problem]
) -> list[Device]:
    devices: list[Device] = []
    seen: set[str] = set()
    for line, row in _rows(path, ("device_id", "site_id", "demonstration_id", "model"), problems):
        device_id = row["device_id"] or ""
        entry = f"{line} (device {device_id or '?'})"
        if not ID_PATTERN.match(device_id):
            reason: str | None = f"device_id {device_id!r} is not an id (A-Z, 0-9, '-', up to 64)"
        elif device_id in seen:
            reason = f"duplicate device_id {device_id}"
        elif row["site_id"] not in site_ids:
            reason = f"site {row['site_id']!r} is not in sites.csv"
        elif row["demonstration_id"] not in demo_ids:
            reason = f"demonstration {row['demonstration_id']!r} is not in demonstrations.yaml"
        else:
            reason = None
        if reason:
            problems.append(Problem(str(path), entry, reason))
            continue
        seen.add(device_id)
        devices.append(
            Device(device_id, row["site_id"], row["demonstration_id"], row["model"] or "")
        )
    return devices


def _demonstrations(path: Path, problems: list[Problem]) -> list[Demonstration]:
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        problems.append(Problem(str(path), "document", f"not YAML: {error}"))
        return []
    entries = document.get("demonstrations") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        problems.append(Problem(str(path), "document", "expected a 'demonstrations' list"))
        return []
    demonstrations: list[Demonstration] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        demo_id = entry.get("demonstration_id", "") if isinstance(entry, dict) else ""
        where = f"demonstrations[{index}] ({demo_id or '?'})"
        try:
            demo = _demonstration(entry, seen)
        except ValueError as error:
            problems.append(Problem(str(path), where, str(error)))
            continue
        seen.add(demo.demonstration_id)
        demonstrations.append(demo)
    return demonstrations


def _demonstration(entry: Any, seen: set[str]) -> Demonstration:
    if not isinstance(entry, dict):
        raise ValueError("expected a mapping")
    for name in ("demonstration_id", "company", "title", "technology", "starts_on", "ends_on"):
        if not entry.get(name):
            raise ValueError(f"{name} missing")
    demo_id = str(entry["demonstration_id"])
    if not ID_PATTERN.match(demo_id):
        raise ValueError(f"demonstration_id {demo_id!r} is not an id")
    if demo_id in seen:
        raise ValueError(f"duplicate demonstration_id {demo_id}")
    starts, ends = _date(entry["starts_on"], "starts_on"), _date(entry["ends_on"], "ends_on")
    if ends < starts:
        raise ValueError(f"ends_on {ends} is before starts_on {starts}")
    kpis: list[Kpi] = []
    for raw in entry.get("kpis") or []:
        kpi = _kpi(raw)
        if any(k.kpi_id == kpi.kpi_id for k in kpis):
            raise ValueError(f"duplicate kpi_id {kpi.kpi_id}")
        kpis.append(kpi)
    return Demonstration(
        demo_id,
        str(entry["company"]),
        str(entry["title"]),
        str(entry["technology"]),
        starts.isoformat(),
        ends.isoformat(),
        tuple(kpis),
        _metric_names(entry.get("metrics"), "metrics"),
        _placement(entry.get("placement")),
    )


def _metric_names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of metric names")
    for name in value:
        if not isinstance(name, str) or not _metric_name.search(name):
            raise ValueError(f"{where}: {name!r} is not a metric name")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: a metric is named twice")
    return tuple(value)


def _placement(raw: Any) -> Placement | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("placement: expected a mapping")
    region = raw.get("region")
    if region is not None and region not in REGIONS:
        raise ValueError(f"placement: region {region!r} is not one of {', '.join(REGIONS)}")
    places = raw.get("place_types")
    if not isinstance(places, list) or not places or any(p not in PLACE_TYPES for p in places):
        raise ValueError(f"placement: place_types {places!r} must list known place types")
    districts = raw.get("districts")
    known = {d for r in REGIONS for d in DISTRICTS[r]}
    if districts is not None and (
        not isinstance(districts, list) or any(d not in known for d in districts)
    ):
        raise ValueError(f"placement: districts {districts!r} must list known districts")
    prefix, model = raw.get("device_prefix"), raw.get("device_model")
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Z]{2,5}", prefix):
        raise ValueError(f"placement: device_prefix {prefix!r} must be 2-5 capital letters")
    return Placement(
        region,
        tuple(places),
        None if districts is None else tuple(districts),
        prefix,
        str(model or ""),
    )


def _date(value: Any, name: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a date (YYYY-MM-DD)") from None


def _kpi(raw: Any) -> Kpi:
    if not isinstance(raw, dict):
        raise ValueError("kpi: expected a mapping")
    kpi_id = str(raw.get("kpi_id", ""))
    where = f"kpi {kpi_id or '?'}"
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", kpi_id):
        raise ValueError(f"{where}: kpi_id must match [a-z][a-z0-9_]{{0,63}}")
    metric = str(raw.get("metric", ""))
    if not _metric_name.search(metric):
        raise ValueError(f"{where}: metric {metric!r} is not a metric name")
    if raw.get("aggregation") not in AGGREGATIONS:
        allowed = ", ".join(AGGREGATIONS)
        raise ValueError(f"{where}: aggregation {raw.get('aggregation')!r} is not one of {allowed}")
    if raw.get("op") not in OPS:
        raise ValueError(f"{where}: op {raw.get('op')!r} is not one of {' '.join(OPS)}")
    if raw.get("window") not in WINDOWS:
        raise ValueError(
            f"{where}: window {raw.get('window')!r} is not one of {', '.join(WINDOWS)}"
        )
    threshold = raw.get("threshold")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
    ):
        raise ValueError(f"{where}: threshold {threshold!r} is not a finite number")
    min_samples = raw.get("min_samples", 1)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 0:
        raise ValueError(f"{where}: min_samples {min_samples!r} is not a whole number >= 0")
    denominator = _metric_names(raw.get("denominator"), f"{where}: denominator")
    if (raw["aggregation"] == "ratio") != bool(denominator):
        raise ValueError(
            f"{where}: a ratio takes a denominator (a list of metrics); nothing else does"
        )
    return Kpi(
        kpi_id,
        str(raw.get("title") or kpi_id),
        metric,
        raw["aggregation"],
        raw["op"],
        float(threshold),
        raw["window"],
        min_samples,
        denominator,
    )
