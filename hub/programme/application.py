"""A demonstration's application: read and checked whole, every error named. Pure.

An application (YAML or JSON) names the demonstration, its company, period, the metrics its
devices report, its KPIs, and its sites with the devices at each: listed by id, or counted for
the hub to name (``<site>-<prefix><n>``). Checked against what the hub holds (sites, devices,
demonstrations) passed in as plain sets, so the rules are tested with plain values:

    demonstration_id: DEMO-014
    company: SchoolSafe
    title: School-zone cameras
    technology: computer vision
    starts_on: '2027-01-04'
    ends_on: '2027-06-30'
    metrics: [online]
    kpis:
      - {kpi_id: latency_p95, metric: inference_latency_ms, aggregation: p95, op: '<=',
         threshold: 250, window: 5m, min_samples: 20}
    sites:
      - {site_id: GJ-DONG-0001, devices: [GJ-DONG-0001-SZC1]}
      - {site_id: GJ-DONG-0002, count: 2, model: SZC-3}
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from hub.errors import HubError
from hub.registry.files import ID_PATTERN
from hub.registry.model import AGGREGATIONS, OPS, WINDOWS, Demonstration, Device, Kpi
from hub.telemetry import METRIC_NAME_PATTERN

_metric_name = re.compile(METRIC_NAME_PATTERN)
PREFIX = re.compile(r"^[A-Z][A-Z0-9]{0,7}$")
MAX_DEVICES_PER_SITE = 64


class ApplicationError(HubError):
    """An application the hub refuses: ``problems`` names every one (field and reason)."""

    def __init__(self, problems: list[str]) -> None:
        shown = "; ".join(problems[:8])
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        super().__init__(f"application refused, nothing changed: {shown}{more}")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Application:
    """A checked application: the demonstration with its KPIs, and the devices it asks for."""

    demonstration: Demonstration
    devices: tuple[Device, ...]

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(sorted({d.site_id for d in self.devices}))

    def as_json(self) -> dict[str, Any]:
        """What is kept with the demonstration (``demonstrations.application``)."""
        demo = self.demonstration
        return {
            "demonstration_id": demo.demonstration_id,
            "company": demo.company,
            "title": demo.title,
            "technology": demo.technology,
            "starts_on": demo.starts_on,
            "ends_on": demo.ends_on,
            "metrics": list(demo.metrics),
            "kpis": [
                {
                    "kpi_id": k.kpi_id,
                    "title": k.title,
                    "metric": k.metric,
                    "aggregation": k.aggregation,
                    "op": k.op,
                    "threshold": k.threshold,
                    "window": k.window,
                    "min_samples": k.min_samples,
                    "denominator": list(k.denominator),
                }
                for k in demo.kpis
            ],
            "devices": [
                {"device_id": d.device_id, "site_id": d.site_id, "model": d.model}
                for d in self.devices
            ],
        }


@dataclass(frozen=True, slots=True)
class Known:
    """What the hub holds already, for the checks."""

    sites: Collection[str]
    devices: Collection[str]
    demonstrations: Collection[str]


def check(document: Any, known: Known, company: str | None = None) -> Application:
    """The application ``document`` (parsed YAML or JSON), checked whole against ``known``;
    ``company``: the only company it may be for (a company token's). Raises ApplicationError
    naming every problem."""
    problems: list[str] = []
    if not isinstance(document, Mapping):
        raise ApplicationError(["the application: not a mapping of fields"])
    text = _texts(document, problems)
    demo_id = text["demonstration_id"]
    if demo_id and not ID_PATTERN.match(demo_id):
        problems.append(f"demonstration_id {demo_id!r}: not an id (A-Z, 0-9, '-', up to 64)")
    elif demo_id in known.demonstrations:
        problems.append(f"demonstration_id {demo_id!r}: exists already")
    if company is not None and text["company"] and text["company"] != company:
        problems.append(f"company {text['company']!r}: this token may apply for {company!r} only")
    starts, ends = _period(text["starts_on"], text["ends_on"], problems)
    metrics = _metrics(document.get("metrics", []), problems)
    kpis = _kpis(document.get("kpis"), problems)
    declared = frozenset(metrics).union(*(k.inputs for k in kpis))
    devices = _devices(document.get("sites"), demo_id, known, problems)
    if problems:
        raise ApplicationError(problems)
    demo = Demonstration(
        demo_id,
        text["company"],
        text["title"],
        text["technology"],
        starts,
        ends,
        tuple(kpis),
        tuple(sorted(declared)),
    )
    return Application(demo, tuple(devices))


def _texts(document: Mapping[str, Any], problems: list[str]) -> dict[str, str]:
    out = {}
    for name in ("demonstration_id", "company", "title", "technology", "starts_on", "ends_on"):
        value = document.get(name)
        if isinstance(value, date):
            value = value.isoformat()
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{name}: missing (a text)")
            out[name] = ""
        elif len(value) > 200:
            problems.append(f"{name}: longer than 200 characters")
            out[name] = ""
        else:
            out[name] = value.strip()
    return out


def _period(starts_on: str, ends_on: str, problems: list[str]) -> tuple[str, str]:
    days = []
    for name, text in (("starts_on", starts_on), ("ends_on", ends_on)):
        try:
            days.append(date.fromisoformat(text) if text else None)
        except ValueError:
            problems.append(f"{name} {text!r}: not a date (YYYY-MM-DD)")
            days.append(None)
    first, last = days
    if first and last and first > last:
        problems.append(f"ends_on {ends_on}: before starts_on {starts_on}")
    return starts_on, ends_on


def _metrics(raw: Any, problems: list[str]) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw):
        problems.append("metrics: a list of metric names")
        return []
    for name in raw:
        if not _metric_name.match(name):
            problems.append(f"metrics: {name!r} is not a metric name ([a-z][a-z0-9_]{{0,63}})")
    return [m for m in raw if _metric_name.match(m)]


def _kpis(raw: Any, problems: list[str]) -> list[Kpi]:
    if not isinstance(raw, list) or not raw:
        problems.append("kpis: at least one KPI")
        return []
    kpis: list[Kpi] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"kpis[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: not a mapping")
            continue
        kpi_id = str(entry.get("kpi_id", ""))
        where = f"kpis[{index}] ({kpi_id or '?'})"
        before = len(problems)
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", kpi_id):
            problems.append(f"{where}: kpi_id {kpi_id!r} is not an id ([a-z][a-z0-9_]{{0,63}})")
        elif kpi_id in seen:
            problems.append(f"{where}: kpi_id {kpi_id!r} twice")
        seen.add(kpi_id)
        metric = entry.get("metric")
        if not isinstance(metric, str) or not _metric_name.match(metric):
            problems.append(f"{where}: metric {metric!r} is not a metric name")
        aggregation = entry.get("aggregation")
        if aggregation not in AGGREGATIONS:
            problems.append(
                f"{where}: aggregation {aggregation!r} is not one of {', '.join(AGGREGATIONS)}"
            )
        op = entry.get("op")
        if op not in OPS:
            problems.append(f"{where}: op {op!r} is not one of {', '.join(OPS)}")
        threshold = entry.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            problems.append(f"{where}: threshold {threshold!r} is not a number")
        window = entry.get("window")
        if window not in WINDOWS:
            problems.append(f"{where}: window {window!r} is not one of {', '.join(WINDOWS)}")
        min_samples = entry.get("min_samples", 1)
        if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 0:
            problems.append(f"{where}: min_samples {min_samples!r} is not a count")
        denominator = entry.get("denominator", [])
        if not isinstance(denominator, list) or not all(
            isinstance(m, str) and _metric_name.match(m) for m in denominator
        ):
            problems.append(f"{where}: denominator: a list of metric names")
            denominator = []
        if (aggregation == "ratio") != bool(denominator):
            problems.append(f"{where}: a ratio needs a denominator, and only a ratio has one")
        if len(problems) == before:
            kpis.append(
                Kpi(
                    kpi_id,
                    str(entry.get("title", "")),
                    str(metric),
                    str(aggregation),
                    str(op),
                    float(threshold),  # type: ignore[arg-type]
                    str(window),
                    int(min_samples),
                    tuple(denominator),
                )
            )
    return kpis


def _devices(raw: Any, demo_id: str, known: Known, problems: list[str]) -> list[Device]:
    if not isinstance(raw, list) or not raw:
        problems.append("sites: at least one site with its devices")
        return []
    devices: list[Device] = []
    taken = set(known.devices)
    sites_seen: set[str] = set()
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            problems.append(f"sites[{index}]: not a mapping")
            continue
        site = str(entry.get("site_id", ""))
        where = f"sites[{index}] ({site or '?'})"
        if site not in known.sites:
            problems.append(f"{where}: unknown site {site!r}")
            continue
        if site in sites_seen:
            problems.append(f"{where}: the site is listed twice")
            continue
        sites_seen.add(site)
        model = str(entry.get("model", ""))[:64]
        listed, count = entry.get("devices"), entry.get("count")
        if (listed is None) == (count is None):
            problems.append(f"{where}: give its devices (a list of ids) or a count, one of them")
            continue
        if listed is not None:
            ids = _listed(listed, site, where, taken, problems)
        else:
            ids = _counted(count, entry.get("prefix", "DEV"), site, where, taken, problems)
        taken.update(ids)
        devices.extend(Device(device_id, site, demo_id, model) for device_id in ids)
    return devices


def _listed(listed: Any, site: str, where: str, taken: set[str], problems: list[str]) -> list[str]:
    if not isinstance(listed, list) or not listed or not all(isinstance(d, str) for d in listed):
        problems.append(f"{where}: devices: a non-empty list of device ids")
        return []
    ids: list[str] = []
    for device_id in listed:
        if not ID_PATTERN.match(device_id):
            problems.append(f"{where}: device {device_id!r} is not an id")
        elif device_id in taken or device_id in ids:
            problems.append(f"{where}: device {device_id!r} exists already (ids never repeat)")
        else:
            ids.append(device_id)
    return ids


def _counted(
    count: Any, prefix: Any, site: str, where: str, taken: set[str], problems: list[str]
) -> list[str]:
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or not 0 < count <= MAX_DEVICES_PER_SITE
    ):
        problems.append(f"{where}: count {count!r} is not 1 to {MAX_DEVICES_PER_SITE}")
        return []
    if not isinstance(prefix, str) or not PREFIX.match(prefix):
        problems.append(f"{where}: prefix {prefix!r} is not A-Z, 0-9 (up to 8, a letter first)")
        return []
    ids: list[str] = []
    n = 1
    while len(ids) < count:
        device_id = f"{site}-{prefix}{n}"
        if device_id not in taken:
            ids.append(device_id)
        n += 1
    return ids
