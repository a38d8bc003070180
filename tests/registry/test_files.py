"""The registry in the repository: its shape, its generator, and refusing broken entries."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import pytest

from hub.registry.files import DATA_DIR, RegistryError, read_registry
from hub.registry.generate import generate
from hub.registry.model import GWANGJU_DISTRICTS, JEONNAM_MUNICIPALITIES, Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return read_registry()


def test_gwangju_has_3375_sites_over_its_five_districts(registry: Registry) -> None:
    gwangju = Counter(s.district for s in registry.sites if s.region == "gwangju")
    assert sum(gwangju.values()) == 3375
    assert set(gwangju) == {"dong", "seo", "nam", "buk", "gwangsan"}
    # By population: Buk-gu and Gwangsan-gu largest, Dong-gu smallest.
    ranked = [district for district, _ in gwangju.most_common()]
    assert ranked[:2] == ["buk", "gwangsan"]
    assert ranked[-1] == "dong"


def test_south_jeolla_has_sites_in_all_22_cities_and_counties(registry: Registry) -> None:
    jeonnam = Counter(s.district for s in registry.sites if s.region == "jeonnam")
    assert set(jeonnam) == set(JEONNAM_MUNICIPALITIES)
    assert len(jeonnam) == 22


def test_sites_lie_inside_their_district(registry: Registry) -> None:
    centres = {
        **{d: (lat, lon, r) for d, (lat, lon, r, _) in GWANGJU_DISTRICTS.items()},
        **JEONNAM_MUNICIPALITIES,
    }
    for site in registry.sites:
        lat, lon, radius = centres[site.district]
        east = (site.lon - lon) * math.cos(math.radians(lat))
        assert math.hypot(site.lat - lat, east) <= radius + 1e-6, site


def test_every_site_hosts_a_demonstration_device(registry: Registry) -> None:
    with_devices = {d.site_id for d in registry.devices}
    assert with_devices == {s.site_id for s in registry.sites}


def test_the_childrens_commute_guardian_runs_at_school_zones(registry: Registry) -> None:
    guardian = next(
        d for d in registry.demonstrations if d.title == "AI Safety Guardian for Children's Commute"
    )
    assert guardian.company == "Company A"
    sites = {s.site_id: s for s in registry.sites}
    places = {
        sites[d.site_id].place_type
        for d in registry.devices
        if d.demonstration_id == guardian.demonstration_id
    }
    assert places == {"school_zone"}
    assert {k.aggregation for k in guardian.kpis} >= {"p95", "availability"}


def test_the_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    generate(tmp_path)
    for name in ("sites.csv", "devices.csv", "demonstrations.yaml"):
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), name


def broken_copy(tmp_path: Path, name: str, old: str, new: str, count: int = 1) -> Path:
    target = tmp_path / "registry"
    shutil.copytree(DATA_DIR, target)
    text = (target / name).read_text()
    assert old in text
    (target / name).write_text(text.replace(old, new, count))
    return target


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        (
            "sites.csv",
            "GJ-DONG-0001,gwangju,dong,",
            "GJ-DONG-0001,gwangju,uptown,",
            "sites.csv: line 2 (site GJ-DONG-0001): unknown district 'uptown' in gwangju",
        ),
        (
            "sites.csv",
            "GJ-DONG-0002,",
            "GJ-DONG-0001,",
            "sites.csv: line 3 (site GJ-DONG-0001): duplicate site_id GJ-DONG-0001",
        ),
        (
            "devices.csv",
            "GJ-DONG-0001-SEN1,GJ-DONG-0001,",
            "GJ-DONG-0001-SEN1,GJ-NOWHERE-0001,",
            "devices.csv: line 2 (device GJ-DONG-0001-SEN1): "
            "site 'GJ-NOWHERE-0001' is not in sites.csv",
        ),
        (
            "demonstrations.yaml",
            "aggregation: p95",
            "aggregation: p97",
            "demonstrations.yaml: demonstrations[0] (DEMO-001): kpi latency_p95: aggregation 'p97' "
            "is not one of",
        ),
        (
            "demonstrations.yaml",
            "window: 5m",
            "window: 7m",
            "kpi latency_p95: window '7m' is not one of 1m, 5m, 15m, 1h, 1d",
        ),
    ],
)
def test_broken_entries_are_refused_with_file_entry_and_reason(
    tmp_path: Path, name: str, old: str, new: str, expected: str
) -> None:
    directory = broken_copy(tmp_path, name, old, new)
    with pytest.raises(RegistryError) as caught:
        read_registry(directory)
    assert any(expected in str(p) for p in caught.value.problems), caught.value.problems
    assert str(directory / name) in str(caught.value)
