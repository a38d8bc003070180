"""Generate the testbed's sites and devices, deterministically (same seed, same bytes).

    python -m hub.registry.generate [--out hub/registry/data]

3,375 Gwangju sites split over the five districts by population (largest remainder), South Jeolla
sites in all 22 cities and counties, and the devices of every demonstration of the catalogue
(``demonstrations.yaml``, edited by hand) at the sites its ``placement`` takes.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hub.registry.files import read_demonstrations
from hub.registry.model import (
    GWANGJU_DISTRICTS,
    GWANGJU_SITES,
    JEONNAM_CITIES,
    JEONNAM_MUNICIPALITIES,
    Demonstration,
    Placement,
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


def runs_at(placement: Placement, site: dict[str, Any]) -> bool:
    return (
        (placement.region is None or placement.region == site["region"])
        and site["place_type"] in placement.place_types
        and (placement.districts is None or site["district"] in placement.districts)
    )


def generate_devices(
    rng: random.Random, sites: list[dict[str, Any]], demos: Sequence[Demonstration]
) -> list[dict[str, Any]]:
    """One device (a fifth of the time two) of every demonstration whose placement takes the
    site."""
    devices: list[dict[str, Any]] = []
    for site in sites:
        numbers: dict[str, int] = {}
        for demo in demos:
            placement = demo.placement
            if placement is None or not runs_at(placement, site):
                continue
            prefix = placement.device_prefix
            for _ in range(2 if rng.random() < 0.2 else 1):
                numbers[prefix] = numbers.get(prefix, 0) + 1
                devices.append(
                    {
                        "device_id": f"{site['site_id']}-{prefix}{numbers[prefix]}",
                        "site_id": site["site_id"],
                        "demonstration_id": demo.demonstration_id,
                        "model": placement.device_model,
                    }
                )
    return devices


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def generate(out: Path, catalogue: Path = DATA_DIR / "demonstrations.yaml") -> dict[str, int]:
    demos = read_demonstrations(catalogue)
    rng = random.Random(SEED)
    sites = generate_sites(rng)
    devices = generate_devices(rng, sites, demos)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "sites.csv", sites)
    write_csv(out / "devices.csv", devices)
    if catalogue.resolve() != (out / "demonstrations.yaml").resolve():
        (out / "demonstrations.yaml").write_bytes(catalogue.read_bytes())
    return {"sites": len(sites), "devices": len(devices), "demonstrations": len(demos)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="where to write the files")
    parser.add_argument(
        "--catalogue",
        type=Path,
        default=DATA_DIR / "demonstrations.yaml",
        help="the demonstrations and where they run (copied to --out when elsewhere)",
    )
    args = parser.parse_args()
    counts = generate(args.out, args.catalogue)
    print(", ".join(f"{n} {what}" for what, n in counts.items()))


if __name__ == "__main__":
    main()
