"""Settings read from the environment: a value the hub cannot use fails at start, naming its
variable and what would do."""

from __future__ import annotations

import pytest

from hub.settings import Settings, SettingsError


def test_the_defaults_hold_together() -> None:
    settings = Settings.from_env({})
    assert settings.dedup_horizon_s >= settings.allowed_lateness_s + 60 + 300
    assert settings.notify_allow_networks == ()


def test_the_dedup_horizon_must_outlast_a_repeat_dated_as_far_ahead_as_allowed() -> None:
    """A repeat may be dated up to 300 s ahead (the clock-skew limit): a horizon of lateness +
    60 s alone forgot the first copy while the repeat's window was still open."""
    with pytest.raises(SettingsError, match=r"HUB_DEDUP_HORIZON=200 .* at least 480"):
        Settings.from_env({"HUB_DEDUP_HORIZON": "200"})
    assert Settings.from_env({"HUB_DEDUP_HORIZON": "480"}).dedup_horizon_s == 480


def test_allowed_webhook_networks_are_checked() -> None:
    settings = Settings.from_env({"HUB_NOTIFY_ALLOW_NETWORKS": "127.0.0.0/8, ::1"})
    assert settings.notify_allow_networks == ("127.0.0.0/8", "::1/128")
    with pytest.raises(SettingsError, match=r"HUB_NOTIFY_ALLOW_NETWORKS=.*'localhost'"):
        Settings.from_env({"HUB_NOTIFY_ALLOW_NETWORKS": "localhost"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HUB_NOTIFY_INCIDENT_BURST", "0"),
        ("HUB_NOTIFY_INCIDENT_PER_HOUR", "0"),
        ("HUB_RETENTION_DLQ_DAYS", "-1"),
        ("HUB_RETENTION_NOTIFY_DAYS", "0"),
    ],
)
def test_limits_and_retentions_must_be_positive(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})
