"""Break each rule in turn and check that its test fails: a test that passes with its rule broken
guards nothing.

    .venv/bin/python scripts/mutants.py [--only NAME ...] > docs/results/logs/mutants-<date>.log

Runs in a throw-away worktree of HEAD (``/tmp/hub-mutants``, its own venv) against the running
local stack (``hub stack up`` first; ``HUB_HOME`` is this checkout's). Each mutant is a literal
replacement in one file: if its text is not found the run says so (the code moved on: update
the mutant). Prints, per mutant, the change, the tests run and their outcome.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKTREE = Path(tempfile.gettempdir()) / "hub-mutants"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    # 1. Keys by time, no gaps.
    Mutant(
        "a miss newer than the registry is final at once (no reread)",
        "streams/snapshot.py",
        "        return appended_ms < self.as_of_ms - margin_ms",
        "        return True",
        (
            "tests/streams/test_runtime.py::test_a_device_provisioned_while_the_worker_runs_loses_nothing",
            "tests/hostile/test_identity.py::test_a_new_key_works_at_once_and_the_old_one_stops",
        ),
    ),
    Mutant(
        "only the current key counts (a rotation replaces the key)",
        "streams/snapshot.py",
        "        return self.from_ms - KEY_CLOCK_MARGIN_MS <= appended_ms < self.until_ms",
        "        return self.until_ms == FOREVER_MS",
        (
            "tests/streams/test_processor.py::test_a_rotated_key_still_signs_what_was_appended_before_the_rotation",
            "tests/hostile/test_identity.py::test_a_rotation_keeps_the_backlog_the_worker_had_not_reached",
        ),
    ),
    # 2. De-duplication per device.
    Mutant(
        "de-duplication by event id alone",
        "streams/processor.py",
        "digest = event_digest(event.device_id, event.event_id)",
        'digest = event_digest("", event.event_id)',
        (
            "tests/streams/test_processor.py::test_two_devices_may_use_the_same_event_id_and_each_counts",
            "tests/hostile/test_repeats.py::test_two_companies_devices_numbering_events_alike_each_count",
        ),
    ),
    Mutant(
        "journals of event-id digests forgotten at the upgrade",
        "streams/processor.py",
        "if windows.legacy and windows.is_legacy_repeat(event.event_id):",
        "if False:",
        (
            "tests/streams/test_processor.py::test_a_journal_of_event_ids_alone_still_recognises_repeats_after_the_upgrade",
        ),
    ),
    Mutant(
        "the de-dup horizon validated without the future allowance",
        "hub/settings.py",
        "            self.allowed_lateness_s + 60 + future_s\n        ):",
        "            self.allowed_lateness_s + 60\n        ):",
        ("tests/test_settings.py",),
    ),
    # 3. Nothing a device sends stops a service.
    Mutant(
        "the notice id in the Message-ID header as it came",
        "hub/notify/send.py",
        'message["Message-ID"] = message_id(str(document["notice_id"]))',
        'message["Message-ID"] = f"<{document[\'notice_id\']}@testbed-hub>"',
        ("tests/notify/test_notifier.py::test_nothing_a_device_sends_stops_the_notifier",),
    ),
    Mutant(
        "a record the hub did not write is not skipped",
        "hub/notify/service.py",
        "        except model.BadMessage as error:",
        "        except ValueError as error:",
        ("tests/notify/test_notifier.py::test_nothing_a_device_sends_stops_the_notifier",),
    ),
    Mutant(
        "no incident limit per device",
        "hub/notify/service.py",
        "allowed, held = self.limiter.allow(fields.device_id, arrival_s(fields.arrived_at))",
        "allowed, held = True, 0",
        (
            "tests/notify/test_notifier.py::test_a_storm_of_incidents_from_one_device_is_heard_a_few_times",
        ),
    ),
    Mutant(
        "webhooks follow redirects",
        "hub/notify/send.py",
        "            allow_redirects=False,",
        "            allow_redirects=True,",
        (
            "tests/notify/test_notifier.py::test_webhooks_follow_no_redirect_and_reach_no_local_service_unless_allowed",
        ),
    ),
    Mutant(
        "webhooks reach link-local and loopback addresses",
        "hub/notify/send.py",
        "        if kind is None or any(ip in network for network in self.allowed):",
        "        if True:",
        (
            "tests/notify/test_routing.py",
            "tests/notify/test_notifier.py::test_webhooks_follow_no_redirect_and_reach_no_local_service_unless_allowed",
        ),
    ),
    Mutant(
        "outbox and quarantine kept forever",
        "hub/upkeep.py",
        '        ("notify_outbox", "created_at", settings.retention_notify_days),\n',
        "",
        ("tests/api/test_upkeep.py",),
    ),
    # 4. Right verdicts from the first window.
    Mutant(
        "counts not scaled to the observed part",
        "streams/kpi.py",
        "        return acc.count / coverage(kpi, state)",
        "        return float(acc.count)",
        ("tests/streams/test_kpi.py",),
    ),
    Mutant(
        "a site's observation starts with its partition's (a device installed at :40)",
        "streams/kpi.py",
        "        state.observed_from_ms = max(state.observed_from_ms, minute_start_ms)",
        "        pass",
        ("tests/streams/test_kpi.py",),
    ),
    Mutant(
        "a site's backlog before its partition's first arrival is not judged",
        "streams/kpi.py",
        "        if fresh and earliest_ms is not None and minute_start_ms >= earliest_ms:",
        "        if False:",
        (
            "tests/streams/test_processor.py::test_a_backlog_minute_just_before_the_first_arrival_is_judged_for_its_site",
        ),
    ),
    Mutant(
        "a partition's observation starts at its first record's date",
        "streams/processor.py",
        "                    self._observe(arrival)",
        "                    self._observe(self.windows.watermark_ms or arrival)",
        (
            "tests/streams/test_processor.py::test_one_back_dated_device_opens_no_empty_windows_for_its_partition",
        ),
    ),
    # 5. Replay identity only the hub can set.
    Mutant(
        "a device's hub-replayed-from header names the DLQ identity",
        "streams/routing.py",
        '        "origin": replay[0] if replay else source,',
        '        "origin": next((v.decode() for n, v in headers if n == "hub-replayed-from"), source),',
        (
            "tests/streams/test_processor.py::test_a_device_cannot_claim_another_records_identity_in_the_dlq",
            "tests/hostile/test_repeats.py::test_a_device_cannot_replace_another_devices_rejected_record",
        ),
    ),
    # 6. Default clients work.
    Mutant(
        "the telemetry topic limited to 257 KiB a batch",
        "hub/topics.py",
        "TELEMETRY_MAX_MESSAGE_BYTES: Final = 1024 * 1024 + 12",
        "TELEMETRY_MAX_MESSAGE_BYTES: Final = 256 * 1024 + 1024",
        ("tests/hostile/test_default_clients.py",),
    ),
    # 7. A narrow trust boundary.
    Mutant(
        "the notifier's principal may write the hub's internal topics",
        "hub/principals.py",
        '            Grant("topic", topics.INCIDENTS, ("Read", *create)),',
        '            Grant("topic", topics.INCIDENTS, ("Read", *create)),\n'
        '            Grant("topic", topics.TICKS, ("Write", "Describe")),',
        ("tests/test_principals.py",),
    ),
    # 8. The smaller items.
    Mutant(
        "late minutes not marked for the roll-up",
        "streams/sink.py",
        "(MERGE_AGGREGATES, MARK_ROLLUP)",
        "(MERGE_AGGREGATES,)",
        ("tests/api/test_upkeep.py",),
    ),
    Mutant(
        "exports share the main pool, unbounded",
        "hub/api/routes/history.py",
        "    busy(request)\n",
        "",
        (
            "tests/api/test_history.py::test_slow_exports_never_take_the_connections_other_callers_need",
        ),
    ),
    Mutant(
        "kpi-results answers 100,000 rows",
        "hub/management/history.py",
        "KPI_RESULTS_MAX_LIMIT: Final = 10_000",
        "KPI_RESULTS_MAX_LIMIT: Final = 100_000",
        (
            "tests/api/test_history.py::test_judged_windows_are_answered_at_most_ten_thousand_at_a_time",
        ),
    ),
    Mutant(
        "/healthz checks at every call",
        "hub/api/routes/operations.py",
        "            if time.monotonic() - self.at >= self.fresh_s:",
        "            if True:",
        (
            "tests/api/test_api.py::test_any_rate_of_health_probes_costs_one_check_every_few_seconds",
        ),
    ),
    Mutant(
        "a partner may be named like the hub",
        "hub/access.py",
        '    if f"{settings.app_id}.".startswith(f"{name}."):',
        "    if False:",
        ("tests/stack/test_access.py::test_bad_requests_are_refused_with_the_reason",),
    ),
    Mutant(
        "a stop after a failed flush counts as clean",
        "streams/faust_compat.py",
        "        return self.undelivered is None and not self.unacknowledged",
        "        return True",
        ("tests/streams/test_faust_compat.py",),
    ),
    # 9. The programme (issue 27).
    Mutant(
        "a KPI window judged by the current version, not the one valid when it started",
        "streams/processor.py",
        "                judged_by = demo.kpi_at(kpi, kpi_state.window_start_ms)",
        "                judged_by = kpi",
        (
            "tests/streams/test_processor.py::test_a_kpi_window_is_judged_by_the_version_valid_when_it_started",
        ),
    ),
    Mutant(
        "records outside an active demonstration counted",
        "streams/intake.py",
        "        if not demo.active_at(event.ts_ms):",
        "        if False:",
        (
            "tests/streams/test_processor.py::test_kpis_are_judged_inside_the_demonstration_period_only",
        ),
    ),
    Mutant(
        "a registry load may move a device to another demonstration",
        "hub/registry/load.py",
        '    "devices": ("site_id", "demonstration_id"),',
        '    "devices": (),',
        ("tests/registry/test_load.py::test_a_device_never_moves_and_nothing_is_deleted",),
    ),
    Mutant(
        "counted devices named over existing ones",
        "hub/programme/application.py",
        "        if device_id not in taken:",
        "        if True:",
        (
            "tests/programme/test_application.py::test_a_sound_application_names_its_devices_around_those_that_exist",
        ),
    ),
    Mutant(
        "a company token applies for another company",
        "hub/programme/application.py",
        '    if company is not None and text["company"] and text["company"] != company:',
        "    if False:",
        (
            "tests/programme/test_application.py::test_a_company_token_applies_for_its_own_company_only",
            "tests/api/test_programme.py::test_a_company_applies_for_itself_and_operators_decide",
        ),
    ),
    Mutant(
        "the audit trail records nothing",
        "hub/audit.py",
        '    await conn.execute(\n        "INSERT INTO audit_log',
        '    return\n    await conn.execute(\n        "INSERT INTO audit_log',
        (
            "tests/programme/test_lifecycle.py::test_a_new_demonstration_changes_nothing_of_anyone_else",
        ),
    ),
    Mutant(
        "retention drops minutes without keeping them as evidence",
        "hub/upkeep.py",
        "        kept = await evidence.keep_for_evidence(\n            conn, now - timedelta(days=settings.retention_raw_days)\n        )",
        "        kept = 0",
        ("tests/programme/test_evidence.py",),
    ),
    Mutant(
        "an evidence pack's files not checked against the manifest",
        "hub/evidence.py",
        "        if hashlib.sha256(data).hexdigest() != digest:",
        "        if False:",
        ("tests/programme/test_evidence.py",),
    ),
    Mutant(
        "a company reads another company's evidence",
        "hub/api/routes/programme.py",
        '    if demo is None or (who.company is not None and demo["company"] != who.company):',
        "    if demo is None:",
        (
            "tests/api/test_programme.py::test_an_ended_demonstrations_evidence_is_its_companys_and_checks_with_the_public_key",
        ),
    ),
)


def sh(*argv: str, cwd: Path, timeout: float = 1800, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    return done.stdout + done.stderr


def prepare() -> None:
    if WORKTREE.exists():
        sh("git", "worktree", "remove", "--force", str(WORKTREE), cwd=ROOT)
    sh("git", "worktree", "add", "--detach", str(WORKTREE), "HEAD", cwd=ROOT)
    sh(sys.executable, "-m", "venv", ".venv", cwd=WORKTREE)
    out = sh(
        ".venv/bin/pip",
        "install",
        "-q",
        "-c",
        "requirements.lock",
        "-e",
        ".[dev,bench]",
        cwd=WORKTREE,
    )
    if not (WORKTREE / ".venv/bin/hub").exists():
        raise SystemExit(f"installing the worktree failed:\n{out[-2000:]}")


def run(mutant: Mutant) -> str:
    path = WORKTREE / mutant.path
    text = path.read_text()
    if text.count(mutant.old) != 1:
        return "MUTANT NOT APPLIED (its text is not in the file exactly once)"
    path.write_text(text.replace(mutant.old, mutant.new))
    env = {**os.environ, "HUB_HOME": str(ROOT / ".hub")}
    try:
        began = time.monotonic()
        out = sh(
            ".venv/bin/pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--timeout",
            "900",
            *mutant.tests,
            cwd=WORKTREE,
            env=env,
        )
        took = time.monotonic() - began
    finally:
        sh("git", "checkout", "--", mutant.path, cwd=WORKTREE)
    lines = [
        ln
        for ln in out.splitlines()
        if ln.startswith(("FAILED", "ERROR")) or " passed" in ln or " failed" in ln
    ]
    verdict = (
        "FAILS, as it must"
        if " failed" in out or "FAILED" in out
        else "PASSES: THE TEST GUARDS NOTHING"
    )
    return f"{verdict} ({took:.0f} s)\n" + "\n".join(f"    {ln}" for ln in lines[-8:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="mutants whose name contains one of these")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    head = sh("git", "log", "--oneline", "-1", cwd=ROOT).strip()
    print(f"# mutants of {head}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    prepare()
    survived = 0
    for mutant in chosen:
        print(
            f"\n== {mutant.name}\n   {mutant.path}: {mutant.old.strip()!r} -> {mutant.new.strip()!r}"
        )
        print(f"   tests: {' '.join(mutant.tests)}", flush=True)
        outcome = run(mutant)
        survived += not outcome.startswith("FAILS")
        print(f"   {outcome}", flush=True)
    print(f"\n{len(chosen) - survived} of {len(chosen)} mutants made their tests fail")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
