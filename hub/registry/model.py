"""The testbed registry's vocabulary: regions, districts, place types, KPI aggregations and windows.

Plain frozen values so validation, the generator, the loader and the stream processors share
one definition of what a valid site, device, demonstration and KPI are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Final

REGIONS: Final = ("gwangju", "jeonnam")
# Korean time: demonstration periods are Korean calendar days, and "today" is a Korean day.
KST: Final = timezone(timedelta(hours=9), "KST")

# Gwangju's five autonomous districts, with an approximate centre and radius (degrees) used to
# place sites inside them, and their population (2023, rounded) used to split the 3,375 sites.
GWANGJU_DISTRICTS: Final[dict[str, tuple[float, float, float, int]]] = {
    "dong": (35.1460, 126.9230, 0.018, 102_000),
    "seo": (35.1520, 126.8900, 0.020, 285_000),
    "nam": (35.1330, 126.9020, 0.020, 210_000),
    "buk": (35.1740, 126.9120, 0.025, 420_000),
    "gwangsan": (35.1390, 126.7940, 0.030, 393_000),
}
GWANGJU_SITES: Final = 3375

# South Jeolla's 5 cities and 17 counties, with an approximate centre and radius (degrees).
JEONNAM_MUNICIPALITIES: Final[dict[str, tuple[float, float, float]]] = {
    "mokpo": (34.8118, 126.3922, 0.020),
    "yeosu": (34.7604, 127.6622, 0.040),
    "suncheon": (34.9506, 127.4872, 0.040),
    "naju": (35.0160, 126.7108, 0.040),
    "gwangyang": (34.9407, 127.6959, 0.030),
    "damyang": (35.3211, 126.9882, 0.030),
    "gokseong": (35.2820, 127.2920, 0.030),
    "gurye": (35.2025, 127.4631, 0.030),
    "goheung": (34.6111, 127.2850, 0.040),
    "boseong": (34.7714, 127.0800, 0.030),
    "hwasun": (35.0645, 126.9866, 0.030),
    "jangheung": (34.6816, 126.9069, 0.030),
    "gangjin": (34.6420, 126.7672, 0.025),
    "haenam": (34.5734, 126.5992, 0.040),
    "yeongam": (34.8002, 126.6968, 0.030),
    "muan": (34.9904, 126.4817, 0.030),
    "hampyeong": (35.0659, 126.5165, 0.025),
    "yeonggwang": (35.2772, 126.5120, 0.030),
    "jangseong": (35.3018, 126.7849, 0.030),
    "wando": (34.3110, 126.7550, 0.030),
    "jindo": (34.4868, 126.2635, 0.030),
    "sinan": (34.8334, 126.3513, 0.030),
}
JEONNAM_CITIES: Final = ("mokpo", "yeosu", "suncheon", "naju", "gwangyang")

GWANGJU_NAMES: Final = {
    "dong": "Dong-gu",
    "seo": "Seo-gu",
    "nam": "Nam-gu",
    "buk": "Buk-gu",
    "gwangsan": "Gwangsan-gu",
}


def district_label(region: str, district: str) -> str:
    """A district as people write it: Buk-gu, Naju."""
    if region == "gwangju":
        return GWANGJU_NAMES.get(district, district)
    return district.replace("_", " ").title()


DISTRICTS: Final[dict[str, tuple[str, ...]]] = {
    "gwangju": tuple(GWANGJU_DISTRICTS),
    "jeonnam": tuple(JEONNAM_MUNICIPALITIES),
}

PLACE_TYPES: Final = (
    "school_zone",
    "crosswalk",
    "intersection",
    "bus_stop",
    "park",
    "public_building",
    "library",
    "market",
    "senior_center",
    "parking_lot",
    "river_trail",
    "apartment_complex",
    "harbor",
    "beach",
    "farm",
)

AGGREGATIONS: Final = (
    "mean",
    "min",
    "max",
    "sum",
    "count",
    "p50",
    "p95",
    "p99",
    "availability",
    "rate",
    "ratio",
)
OPS: Final = ("<", "<=", ">", ">=")
WINDOWS: Final[dict[str, int]] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}


@dataclass(frozen=True, slots=True)
class Site:
    site_id: str
    region: str
    district: str
    place_type: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    site_id: str
    demonstration_id: str
    model: str


@dataclass(frozen=True, slots=True)
class Kpi:
    """One demonstration KPI: ``aggregation(metric) op threshold`` over ``window``.

    ``min_samples``: fewer samples of ``metric`` in the window than this and the window is
    judged ``insufficient_data`` instead of pass or fail. ``denominator`` (``ratio`` only): the
    metrics whose sums, added, divide the sum of ``metric`` (precision = tp / (tp + fp)).
    """

    kpi_id: str
    title: str
    metric: str
    aggregation: str
    op: str
    threshold: float
    window: str
    min_samples: int
    denominator: tuple[str, ...] = ()
    # Which version of the KPI's definition this is (a threshold changed from a stated time).
    version: int = 1

    @property
    def window_s(self) -> int:
        return WINDOWS[self.window]

    @property
    def inputs(self) -> tuple[str, ...]:
        """Every metric whose windows this KPI reads, ``metric`` first."""
        return (self.metric, *(m for m in self.denominator if m != self.metric))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the registry generator puts a demonstration's devices (not loaded anywhere)."""

    region: str | None  # None: both regions
    place_types: tuple[str, ...]
    districts: tuple[str, ...] | None
    device_prefix: str
    device_model: str


@dataclass(frozen=True, slots=True)
class Demonstration:
    demonstration_id: str
    company: str
    title: str
    technology: str
    starts_on: str
    ends_on: str
    kpis: tuple[Kpi, ...]
    # Every metric name its devices may report besides the KPIs' inputs.
    metrics: tuple[str, ...] = ()
    placement: Placement | None = None

    @property
    def declared_metrics(self) -> frozenset[str]:
        """The names its devices may report: the declared ones and every KPI input."""
        return frozenset(self.metrics).union(*(k.inputs for k in self.kpis))


@dataclass(frozen=True, slots=True)
class Registry:
    sites: tuple[Site, ...]
    devices: tuple[Device, ...]
    demonstrations: tuple[Demonstration, ...]
    digest: str
