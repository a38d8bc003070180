"""Generate the testbed registry files, deterministically (same seed, same bytes).

    python -m hub.registry.generate [--out hub/registry/data]

3,375 Gwangju sites split over the five districts by population (largest remainder), South Jeolla
sites in all 22 cities and counties, the demonstrations with their KPIs, and their devices per
site. The files are the registry: edit them by hand or change this script and run it again.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.registry.model import (
    GWANGJU_DISTRICTS,
    GWANGJU_SITES,
    JEONNAM_CITIES,
    JEONNAM_MUNICIPALITIES,
)

SEED = 20261125
DATA_DIR = Path(__file__).resolve().parent / "data"

GWANGJU_PLACES = {
    "school_zone": 18,
    "crosswalk": 14,
    "intersection": 10,
    "bus_stop": 16,
    "park": 8,
    "public_building": 6,
    "library": 3,
    "market": 4,
    "senior_center": 6,
    "parking_lot": 6,
    "river_trail": 3,
    "apartment_complex": 6,
}
INLAND = ("naju", "damyang", "gokseong", "gurye", "hwasun", "jangseong")
JEONNAM_PLACES_COASTAL = {
    "harbor": 4,
    "beach": 3,
    "farm": 3,
    "bus_stop": 3,
    "school_zone": 3,
    "market": 2,
}
JEONNAM_PLACES_INLAND = {"farm": 6, "bus_stop": 4, "school_zone": 3, "market": 2}


@dataclass(frozen=True)
class DemoSpec:
    """Which sites a demonstration runs at and what it brings there."""

    demonstration_id: str
    company: str
    title: str
    technology: str
    region: str | None  # None: both regions
    places: tuple[str, ...]
    districts: tuple[str, ...] | None
    device_prefix: str
    device_model: str
    starts_on: str
    ends_on: str
    kpis: tuple[dict[str, Any], ...]


def kpi(
    kpi_id: str,
    title: str,
    metric: str,
    aggregation: str,
    op: str,
    threshold: float,
    window: str,
    min_samples: int,
) -> dict[str, Any]:
    return {
        "kpi_id": kpi_id,
        "title": title,
        "metric": metric,
        "aggregation": aggregation,
        "op": op,
        "threshold": threshold,
        "window": window,
        "min_samples": min_samples,
    }


DEMOS: tuple[DemoSpec, ...] = (
    DemoSpec(
        "DEMO-001",
        "Company A",
        "AI Safety Guardian for Children's Commute",
        "traffic_hazard_detection",
        "gwangju",
        ("school_zone",),
        None,
        "CAM",
        "Guardian Edge v2",
        "2026-03-02",
        "2027-02-26",
        (
            kpi(
                "latency_p95",
                "Hazard inference latency, 95th percentile",
                "inference_latency_ms",
                "p95",
                "<=",
                250,
                "5m",
                30,
            ),
            kpi(
                "availability",
                "Camera availability",
                "online",
                "availability",
                ">=",
                0.99,
                "1h",
                30,
            ),
            kpi(
                "false_alarm_rate",
                "False alarms per minute",
                "false_alarms",
                "rate",
                "<=",
                0.5,
                "15m",
                60,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-002",
        "Nuri Vision",
        "Smart Crosswalk Pedestrian Signal Assist",
        "pedestrian_detection",
        "gwangju",
        ("crosswalk", "intersection"),
        None,
        "CAM",
        "NV-Cross 3",
        "2026-04-01",
        "2027-03-31",
        (
            kpi(
                "latency_p99",
                "Detection latency, 99th percentile",
                "inference_latency_ms",
                "p99",
                "<=",
                300,
                "5m",
                30,
            ),
            kpi(
                "availability",
                "Device availability",
                "online",
                "availability",
                ">=",
                0.995,
                "1h",
                30,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-003",
        "Mobility Lab Gwangju",
        "AI Bus Arrival Prediction",
        "transit_prediction",
        "gwangju",
        ("bus_stop",),
        None,
        "SEN",
        "MLG Stop Sensor",
        "2026-01-05",
        "2026-12-31",
        (
            kpi(
                "error_mean",
                "Mean arrival prediction error (s)",
                "prediction_error_s",
                "mean",
                "<=",
                60,
                "15m",
                10,
            ),
            kpi(
                "error_p95",
                "Arrival prediction error, 95th percentile (s)",
                "prediction_error_s",
                "p95",
                "<=",
                180,
                "1h",
                30,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-004",
        "CareSense AI",
        "Fall Detection at Senior Centres",
        "fall_detection",
        "gwangju",
        ("senior_center",),
        None,
        "CAM",
        "CareSense Room",
        "2026-05-01",
        "2027-04-30",
        (
            kpi(
                "latency_p95",
                "Fall inference latency, 95th percentile",
                "inference_latency_ms",
                "p95",
                "<=",
                500,
                "5m",
                30,
            ),
            kpi(
                "availability",
                "Device availability",
                "online",
                "availability",
                ">=",
                0.99,
                "1h",
                30,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-005",
        "ParkEye",
        "Illegal Parking Detection",
        "license_plate_recognition",
        "gwangju",
        ("parking_lot", "market"),
        None,
        "CAM",
        "ParkEye LPR",
        "2026-02-02",
        "2027-01-29",
        (
            kpi(
                "read_accuracy",
                "Plate read accuracy (%)",
                "read_accuracy_pct",
                "mean",
                ">=",
                95,
                "15m",
                10,
            ),
            kpi(
                "availability",
                "Camera availability",
                "online",
                "availability",
                ">=",
                0.98,
                "1h",
                30,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-006",
        "Clean Air Tech",
        "Neighbourhood Air Quality Forecasting",
        "air_quality_forecast",
        "gwangju",
        ("park", "public_building"),
        None,
        "AQS",
        "CAT Air Node",
        "2026-01-15",
        "2027-01-14",
        (
            kpi(
                "forecast_error_p50",
                "Forecast error, median (%)",
                "forecast_error_pct",
                "p50",
                "<=",
                15,
                "1h",
                30,
            ),
            kpi(
                "availability",
                "Sensor availability",
                "online",
                "availability",
                ">=",
                0.97,
                "1d",
                60,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-007",
        "Lumen AI",
        "Adaptive Streetlight Energy Saving",
        "smart_lighting",
        "gwangju",
        ("river_trail", "apartment_complex"),
        None,
        "LUM",
        "Lumen Pole Controller",
        "2026-06-01",
        "2027-05-31",
        (kpi("power_mean", "Mean power draw (W)", "power_w", "mean", "<=", 80, "15m", 10),),
    ),
    DemoSpec(
        "DEMO-008",
        "Firewatch",
        "Traditional Market Fire Early Warning",
        "fire_detection",
        None,
        ("market",),
        None,
        "SEN",
        "Firewatch Smoke AI",
        "2026-03-16",
        "2027-03-15",
        (
            kpi(
                "latency_max",
                "Worst smoke inference latency (ms)",
                "inference_latency_ms",
                "max",
                "<=",
                1000,
                "5m",
                10,
            ),
            kpi("heartbeats", "Heartbeats per hour", "online", "count", ">=", 55, "1h", 1),
        ),
    ),
    DemoSpec(
        "DEMO-009",
        "Crowd Insight",
        "Public Building Crowd Analytics",
        "crowd_analytics",
        "gwangju",
        ("library", "public_building"),
        None,
        "CAM",
        "CI Counter",
        "2026-07-01",
        "2027-06-30",
        (
            kpi(
                "latency_p50",
                "Counting latency, median (ms)",
                "inference_latency_ms",
                "p50",
                "<=",
                120,
                "1m",
                5,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-010",
        "Blue Ocean Robotics",
        "Coastal Water Safety Monitoring",
        "water_safety_detection",
        "jeonnam",
        ("harbor", "beach"),
        None,
        "CAM",
        "BOR Shore Cam",
        "2026-05-15",
        "2027-05-14",
        (
            kpi(
                "availability",
                "Camera availability",
                "online",
                "availability",
                ">=",
                0.98,
                "1h",
                30,
            ),
            kpi(
                "latency_p95",
                "Detection latency, 95th percentile",
                "inference_latency_ms",
                "p95",
                "<=",
                400,
                "5m",
                30,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-011",
        "AgriMind",
        "Crop Disease Detection for Smart Farms",
        "crop_disease_detection",
        "jeonnam",
        ("farm",),
        None,
        "CAM",
        "AgriMind Leaf Scanner",
        "2026-04-01",
        "2026-12-31",
        (
            kpi(
                "scan_rate",
                "Leaf images scanned per minute",
                "leaf_images",
                "rate",
                ">=",
                1,
                "15m",
                10,
            ),
            kpi(
                "availability",
                "Scanner availability",
                "online",
                "availability",
                ">=",
                0.95,
                "1d",
                60,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-012",
        "Honam Transit AI",
        "Super-regional Commuter Bus Demand Prediction",
        "transit_prediction",
        None,
        ("bus_stop",),
        ("buk", "gwangsan", *JEONNAM_MUNICIPALITIES),
        "SEN",
        "HTA Demand Node",
        "2026-09-01",
        "2027-08-31",
        (
            kpi(
                "error_mean",
                "Mean arrival prediction error (s)",
                "prediction_error_s",
                "mean",
                "<=",
                90,
                "15m",
                10,
            ),
        ),
    ),
    DemoSpec(
        "DEMO-013",
        "Company A",
        "AI Safety Guardian for Children's Commute: South Jeolla",
        "traffic_hazard_detection",
        "jeonnam",
        ("school_zone",),
        None,
        "CAM",
        "Guardian Edge v2",
        "2026-09-01",
        "2027-08-31",
        (
            kpi(
                "latency_p95",
                "Hazard inference latency, 95th percentile",
                "inference_latency_ms",
                "p95",
                "<=",
                250,
                "5m",
                30,
            ),
            kpi(
                "availability",
                "Camera availability",
                "online",
                "availability",
                ">=",
                0.99,
                "1h",
                30,
            ),
        ),
    ),
)


def split_by_population(total: int, populations: dict[str, int]) -> dict[str, int]:
    """Largest-remainder apportionment: shares proportional to population, summing to total."""
    whole = sum(populations.values())
    exact = {name: total * pop / whole for name, pop in populations.items()}
    counts = {name: math.floor(share) for name, share in exact.items()}
    left = total - sum(counts.values())
    for name in sorted(exact, key=lambda n: exact[n] - counts[n], reverse=True)[:left]:
        counts[name] += 1
    return counts


def point_in_disk(rng: random.Random, lat: float, lon: float, radius: float) -> tuple[float, float]:
    r = radius * math.sqrt(rng.random())
    angle = rng.uniform(0, 2 * math.pi)
    # Longitude degrees are shorter by cos(latitude): keep the disk round on the ground.
    return (
        round(lat + r * math.sin(angle), 6),
        round(lon + r * math.cos(angle) / math.cos(math.radians(lat)), 6),
    )


def weighted_places(rng: random.Random, weights: dict[str, int], n: int) -> list[str]:
    """Every place type at least once when n allows, the rest drawn by weight."""
    kinds = list(weights)
    places = kinds[:n] + rng.choices(
        kinds, weights=list(weights.values()), k=max(0, n - len(kinds))
    )
    rng.shuffle(places)
    return places


def label(district: str) -> str:
    return district.replace("_", " ").title()


def generate_sites(rng: random.Random) -> list[dict[str, Any]]:
    sites: list[dict[str, Any]] = []
    populations = {name: spec[3] for name, spec in GWANGJU_DISTRICTS.items()}
    for district, count in split_by_population(GWANGJU_SITES, populations).items():
        lat, lon, radius, _ = GWANGJU_DISTRICTS[district]
        for n, place in enumerate(weighted_places(rng, GWANGJU_PLACES, count), start=1):
            site_lat, site_lon = point_in_disk(rng, lat, lon, radius)
            sites.append(
                {
                    "site_id": f"GJ-{district.upper()}-{n:04d}",
                    "region": "gwangju",
                    "district": district,
                    "place_type": place,
                    "name": f"{label(district)}-gu {place.replace('_', ' ')} {n}",
                    "lat": site_lat,
                    "lon": site_lon,
                }
            )
    for municipality, (lat, lon, radius) in JEONNAM_MUNICIPALITIES.items():
        is_city = municipality in JEONNAM_CITIES
        count = rng.randint(20, 30) if is_city else rng.randint(8, 16)
        weights = JEONNAM_PLACES_INLAND if municipality in INLAND else JEONNAM_PLACES_COASTAL
        for n, place in enumerate(weighted_places(rng, weights, count), start=1):
            site_lat, site_lon = point_in_disk(rng, lat, lon, radius)
            suffix = "-si" if is_city else "-gun"
            sites.append(
                {
                    "site_id": f"JN-{municipality.upper()}-{n:04d}",
                    "region": "jeonnam",
                    "district": municipality,
                    "place_type": place,
                    "name": f"{label(municipality)}{suffix} {place.replace('_', ' ')} {n}",
                    "lat": site_lat,
                    "lon": site_lon,
                }
            )
    return sites


def runs_at(demo: DemoSpec, site: dict[str, Any]) -> bool:
    return (
        (demo.region is None or demo.region == site["region"])
        and site["place_type"] in demo.places
        and (demo.districts is None or site["district"] in demo.districts)
    )


def generate_devices(rng: random.Random, sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = []
    for site in sites:
        numbers: dict[str, int] = {}
        for demo in DEMOS:
            if not runs_at(demo, site):
                continue
            for _ in range(2 if rng.random() < 0.2 else 1):
                numbers[demo.device_prefix] = numbers.get(demo.device_prefix, 0) + 1
                devices.append(
                    {
                        "device_id": f"{site['site_id']}-{demo.device_prefix}"
                        f"{numbers[demo.device_prefix]}",
                        "site_id": site["site_id"],
                        "demonstration_id": demo.demonstration_id,
                        "model": demo.device_model,
                    }
                )
    return devices


def demonstrations_document() -> dict[str, Any]:
    return {
        "demonstrations": [
            {
                "demonstration_id": d.demonstration_id,
                "company": d.company,
                "title": d.title,
                "technology": d.technology,
                "starts_on": d.starts_on,
                "ends_on": d.ends_on,
                "kpis": list(d.kpis),
            }
            for d in DEMOS
        ]
    }


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def generate(out: Path) -> dict[str, int]:
    rng = random.Random(SEED)
    sites = generate_sites(rng)
    devices = generate_devices(rng, sites)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "sites.csv", sites)
    write_csv(out / "devices.csv", devices)
    header = "# Generated by `python -m hub.registry.generate`; the KPIs of every demonstration.\n"
    (out / "demonstrations.yaml").write_text(
        header + yaml.safe_dump(demonstrations_document(), sort_keys=False, allow_unicode=True)
    )
    return {"sites": len(sites), "devices": len(devices), "demonstrations": len(DEMOS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="where to write the files")
    counts = generate(parser.parse_args().out)
    print(", ".join(f"{n} {what}" for what, n in counts.items()))


if __name__ == "__main__":
    main()
