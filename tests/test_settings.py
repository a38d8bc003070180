"""Settings read from the environment: a value the hub cannot use fails at start, naming its
variable and what would do."""

from __future__ import annotations

from dataclasses import fields

import pytest

from hub.settings import PROJECT_ROOT, Settings, SettingsError, settings_table


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


def test_the_readme_lists_every_setting_as_declared() -> None:
    """The README's table is made from the declarations (`python -m hub.settings`): a setting
    added, renamed or given another default without the README fails here."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    start = readme.index("<!-- settings:")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- /settings -->")]
    assert table == settings_table()
    assert "HUB_TICK_INTERVAL" in table


def test_every_variable_is_read_into_its_field() -> None:
    """One name per setting: each declared variable sets its own field."""
    for f in fields(Settings):
        variable = f.metadata.get("env")
        if variable is None or f.type not in ("int", "float"):
            continue
        default = getattr(Settings(), f.name)
        changed = default + (7 if f.type == "int" else 0.5)
        if variable == "HUB_KAFKA_BROKERS":
            changed = 3  # 1 or 3
        if variable == "HUB_FEDERATION":
            changed = 1  # 0 or 1
        assert getattr(Settings.from_env({variable: str(changed)}), f.name) == changed, variable
