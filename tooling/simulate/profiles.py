"""How each technology's devices behave: metric distributions, detections, outages.

Pure: a profile turns a random generator and a site's quality into one event's kind and metrics.
A small share of sites is deliberately weak (slower inference, worse predictions) so the KPI
judgement has failures to find, as a real testbed would.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from typing import Final

Metrics = dict[str, float]
Profile = Callable[[random.Random, float], tuple[str, Metrics]]


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return round(median * math.exp(rng.gauss(0.0, sigma)), 2)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means device counters have."""
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _detector(
    latency_median: float,
    sigma: float,
    counts: dict[str, float],
    detection: str | None = None,
    errors: dict[str, float] | None = None,
) -> Profile:
    """Vision devices: an inference latency, some counts, and 'detection' events when they fire.
    ``errors``: ground-truth counts of mistakes (verified false positives, missed objects), more
    frequent at a weak site."""

    def profile(rng: random.Random, quality: float) -> tuple[str, Metrics]:
        metrics: Metrics = {
            "inference_latency_ms": _lognormal(rng, latency_median / quality, sigma),
            "online": 1,
        }
        for name, mean in counts.items():
            metrics[name] = _poisson(rng, mean)
        for name, mean in (errors or {}).items():
            metrics[name] = _poisson(rng, mean / quality)
        kind = "detection" if detection and metrics.get(detection, 0) > 0 else "measurement"
        return kind, metrics

    return profile


def _transit(rng: random.Random, quality: float) -> tuple[str, Metrics]:
    return "measurement", {
        "prediction_error_s": round(abs(rng.gauss(0.0, 45.0 / quality)), 1),
        "predictions": _poisson(rng, 3.0),
        "online": 1,
    }


def _plates(rng: random.Random, quality: float) -> tuple[str, Metrics]:
    accuracy = min(100.0, rng.gauss(97.5 - 4 * (1 - quality), 1.5))
    return "measurement", {
        "plates_read": _poisson(rng, 1.5),
        "read_accuracy_pct": round(accuracy, 2),
        "online": 1,
    }


def _air(rng: random.Random, quality: float) -> tuple[str, Metrics]:
    return "measurement", {
        "pm25_ugm3": _lognormal(rng, 18.0, 0.5),
        "forecast_error_pct": round(abs(rng.gauss(0.0, 12.0 / quality)), 2),
        "online": 1,
    }


def _lighting(rng: random.Random, quality: float) -> tuple[str, Metrics]:
    return "measurement", {
        "power_w": round(max(0.0, rng.gauss(62.0 / quality, 8.0)), 1),
        "dimming_pct": round(rng.uniform(20.0, 100.0), 1),
        "online": 1,
    }


def _fire(rng: random.Random, quality: float) -> tuple[str, Metrics]:
    smoke = round(rng.betavariate(1.2, 30.0), 4)
    kind = "incident" if smoke > 0.25 else "measurement"
    return kind, {
        "smoke_index": smoke,
        "inference_latency_ms": _lognormal(rng, 300.0 / quality, 0.35),
        "online": 1,
    }


def _crop(rng: random.Random, quality: float) -> tuple[str, Metrics]:
    found = _poisson(rng, 0.02)
    return ("detection" if found else "measurement"), {
        "leaf_images": _poisson(rng, 2.5 * quality),
        "disease_detected": found,
        "inference_latency_ms": _lognormal(rng, 400.0 / quality, 0.3),
        "online": 1,
    }


PROFILES: Final[dict[str, Profile]] = {
    # Ground truth: a share of detections verified on site (true positives) and the mistakes
    # found (false positives, missed pedestrians), from which precision and recall are judged.
    "traffic_hazard_detection": _detector(
        90.0,
        0.35,
        {"hazards_detected": 0.05, "false_alarms": 0.005, "gt_true_positives": 0.05},
        "hazards_detected",
        {"gt_false_positives": 0.004},
    ),
    "pedestrian_detection": _detector(
        110.0,
        0.30,
        {"pedestrians_detected": 2.0, "signal_extensions": 0.1, "gt_true_positives": 0.2},
        None,
        {"gt_false_negatives": 0.005},
    ),
    "fall_detection": _detector(200.0, 0.40, {"falls_detected": 0.001}, "falls_detected"),
    "crowd_analytics": _detector(70.0, 0.30, {"occupancy": 40.0}),
    "water_safety_detection": _detector(
        180.0, 0.35, {"drowning_alerts": 0.0005}, "drowning_alerts"
    ),
    "transit_prediction": _transit,
    "license_plate_recognition": _plates,
    "air_quality_forecast": _air,
    "smart_lighting": _lighting,
    "fire_detection": _fire,
    "crop_disease_detection": _crop,
}


def profile_for(technology: str) -> Profile:
    """Unknown technologies still publish plausible measurements rather than nothing."""
    return PROFILES.get(technology, _detector(150.0, 0.3, {}))


def site_quality(site_id: str, weak_share: float = 0.06) -> float:
    """1.0 for most sites; a stable few (by site id) are 2.5 times worse."""
    return 0.4 if zlib.crc32(site_id.encode()) % 1000 < weak_share * 1000 else 1.0
