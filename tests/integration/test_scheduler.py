"""The scheduler end to end: real daemon, real plugins, real HTTP and CLI (scheduler.md, jobs.md §9).

Waits poll the state DB or the API with a deadline; nothing sleeps to wait for work (the one sleep is
the downtime of the catch-up test, which is what that test is about). Where a test
needs "the scheduler has evaluated the entries after a restart", a fresh ``every`` entry added at
that restart is the marker: it fires on the first pass, which evaluates every entry.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import closing
from itertools import pairwise
from pathlib import Path
from typing import Any

from ductile.events.log import read_rows
from ductile.events.timefmt import parse_rfc3339
from ductile.events.types import (
    BreakerTransitioned,
    EventBase,
    JobDead,
    JobEnqueued,
    ScheduleFired,
    ScheduleSkipped,
)
from tests.integration.daemon import TOKEN, process_alive, wait_until

S = 1_000_000_000
READ_ONLY_TOKEN = "plugin-read-only-token"
STATUS_TOKEN = "jobs-status-token"


def events(gw: Any, *types: type[EventBase]) -> list[tuple[int, Any]]:
    """``(position, event)`` for every logged event of ``types``, in log order."""
    with closing(gw.db()) as db:
        return [(r.position, r.event) for r in read_rows(db) if isinstance(r.event, types)]


def scheduled_jobs(gw: Any, schedule_id: str | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT job_id, plugin, command, status, submitted_by, schedule_id, dedupe_key, created_ns"
           " FROM job_queue WHERE schedule_id IS NOT NULL")
    params: tuple[Any, ...] = ()
    if schedule_id is not None:
        sql += " AND schedule_id = ?"
        params = (schedule_id,)
    with closing(gw.db()) as db:
        cols = ("job_id", "plugin", "command", "status", "submitted_by", "schedule_id", "dedupe_key", "created_ns")
        return [dict(zip(cols, r, strict=True)) for r in db.execute(sql + " ORDER BY created_ns", params)]


def schedule_row(gw: Any, plugin: str, schedule_id: str, required: bool = True) -> dict[str, Any]:
    """The entry's ``schedule_state`` row (``{}`` when not stored yet and not ``required``)."""
    with closing(gw.db()) as db:
        db.row_factory = lambda cur, row: {d[0]: v for d, v in zip(cur.description, row, strict=True)}
        row = db.execute("SELECT * FROM schedule_state WHERE plugin=? AND schedule_id=?", (plugin, schedule_id)).fetchone()
    assert row is not None or not required, (plugin, schedule_id)
    return row or {}


def breaker_row(gw: Any, plugin: str, command: str = "poll") -> tuple[str, int] | None:
    with closing(gw.db()) as db:
        return db.execute("SELECT state, failure_count FROM circuit_breakers WHERE plugin=? AND command=?",
                          (plugin, command)).fetchone()


def transitions(gw: Any, plugin: str) -> list[tuple[str | None, str, int, str, str | None]]:
    with closing(gw.db()) as db:
        return db.execute(
            "SELECT from_state, to_state, failure_count, reason, job_id FROM circuit_breaker_transitions"
            " WHERE plugin=? ORDER BY id", (plugin,)).fetchall()


def at_least(n: int, rows: list[Any]) -> list[Any] | None:
    return rows if len(rows) >= n else None


def listing(gw: Any) -> dict[tuple[str, str], dict[str, Any]]:
    resp = gw.client.get("/scheduler/jobs")
    assert resp.status_code == 200, resp.text
    return {(j["plugin"], j["schedule_id"]): j for j in resp.json()["jobs"]}


# --- firing ------------------------------------------------------------------------------------------


def test_every_two_seconds_fires_repeatedly_as_scheduler_jobs(gateway: Any) -> None:
    gw = gateway({"shellok": {"enabled": True, "schedules": [{"id": "fast", "every": "2s"}]}})
    started = time.monotonic()
    jobs = wait_until(lambda: at_least(3, scheduled_jobs(gw, "fast")), timeout=9, what="three scheduled jobs")
    assert time.monotonic() - started < 7.5
    for job in jobs:
        assert (job["plugin"], job["command"], job["submitted_by"], job["schedule_id"], job["dedupe_key"]) == (
            "shellok", "poll", "ductile", "fast", "shellok:poll:fast")
    gaps = [(b["created_ns"] - a["created_ns"]) / S for a, b in pairwise(jobs)]
    assert all(1.9 <= g <= 3.5 for g in gaps[:2]), gaps  # about every 2 s, never early
    assert gw.wait_job(jobs[0]["job_id"])["status"] == "succeeded"
    assert gw.job(jobs[0]["job_id"])["submitted_by"] == "ductile"
    entry = wait_until(lambda: (e := listing(gw)[("shellok", "fast")]).get("last_success_job_id") and e, 10,
                       what="last_success_job_id")
    assert entry["last_success_job_id"] in {j["job_id"] for j in scheduled_jobs(gw, "fast")}
    assert (entry["status"], entry["mode"], entry["command"]) == ("scheduled", "every", "poll")
    assert entry["last_fired_at"] and entry["last_success_at"] and entry["breaker_state"] == "closed"
    fired = [e for _, e in events(gw, ScheduleFired)]
    slots = [e.slot for e in fired]
    assert all(b - a >= 2 * S for a, b in pairwise(slots))  # slot = previous fire + 2 s
    logged = {line["job_id"]: line for line in gw.log_lines() if line.get("msg") == "Enqueued scheduled job"}
    line = logged[jobs[0]["job_id"]]
    assert (line["level"], line["plugin"], line["command"], line["schedule_id"]) == ("INFO", "shellok", "poll", "fast")


def test_invalid_entries_are_listed_and_do_not_stop_valid_ones(gateway: Any) -> None:
    plugins = {
        "behave": {"enabled": True, "retry": {"max_attempts": 1}, "schedules": [
            {"id": "bad_every", "every": 300},
            {"id": "bad_handle", "every": "5m", "command": "handle"},
            {"id": "both", "every": "5m", "cron": "* * * * *"},
            {"id": "undeclared", "every": "5m", "command": "sync"},
            {"id": "sleepy", "every": "1h", "payload": {"mode": "sleep", "seconds": 60}},
            {"id": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin"},
        ]},
        "shellok": {"enabled": True, "schedules": [{"id": "quick", "every": "1h", "timezone": "UTC"}]},
    }
    tokens = [{"token": TOKEN, "scopes": ["*"]}, {"token": READ_ONLY_TOKEN, "scopes": ["plugin:ro"]},
              {"token": STATUS_TOKEN, "scopes": ["jobs:status:ro"]}]
    gw = gateway(plugins, tokens=tokens, service={"shutdown_grace": "1s"})
    [sleepy] = wait_until(lambda: [j for j in scheduled_jobs(gw, "sleepy") if j["status"] == "running"], 15,
                          what="the sleepy scheduled job to run")
    wait_until(lambda: [j for j in scheduled_jobs(gw, "quick") if j["status"] == "succeeded"], 15,
               what="the shellok entry to fire")

    entries = listing(gw)
    assert list(entries) == [("behave", i) for i in ("bad_every", "bad_handle", "both", "undeclared", "sleepy",
                                                       "nightly")] + [("shellok", "quick")]
    expected_invalid = {
        "bad_every": ("every", "invalid_schedule_config", "poll"),
        "bad_handle": ("every", "scheduled_handle_disallowed", "handle"),
        "both": ("unknown", "invalid_schedule_config", "poll"),
        "undeclared": ("every", "command_not_supported", "sync"),
    }
    for sid, (mode, reason, command) in expected_invalid.items():
        e = entries[("behave", sid)]
        assert (e["status"], e["mode"], e["reason"], e["command"]) == ("invalid", mode, reason, command), e
        assert e["detail"] and "next_run_at" not in e
        assert schedule_row(gw, "behave", sid)["status"] == "paused_invalid"
    assert entries[("behave", "bad_handle")]["detail"] == "handle cannot be scheduled"
    for plugin, sid, mode, tz in (("behave", "sleepy", "every", None), ("behave", "nightly", "cron", "Europe/Berlin"),
                                  ("shellok", "quick", "every", "UTC")):
        e = entries[(plugin, sid)]
        assert (e["status"], e["mode"]) == ("scheduled", mode), e
        assert "reason" not in e
        if tz:
            assert e["timezone"] == tz
        stored = schedule_row(gw, plugin, sid)["next_run_ns"]
        assert parse_rfc3339(e["next_run_at"]) == stored // 1000 * 1000, (e, stored)
    assert entries[("behave", "sleepy")]["outstanding"] == 1
    assert parse_rfc3339(entries[("behave", "nightly")]["next_run_at"]) > time.time_ns()
    invalid_logged = {line["schedule_id"]: line for line in gw.log_lines() if line.get("msg") == "schedule entry invalid"}
    assert set(invalid_logged) == set(expected_invalid)
    for sid, (_, reason, _) in expected_invalid.items():
        line = invalid_logged[sid]
        assert (line["level"], line["plugin"], line["reason"]) == ("ERROR", "behave", reason) and line["detail"]

    # Scopes: jobs:status:ro may read; another scope is 403; no token is 401.
    headers = {"Authorization": f"Bearer {STATUS_TOKEN}"}
    assert gw.client.get("/scheduler/jobs", headers=headers).status_code == 200
    forbidden = gw.client.get("/scheduler/jobs", headers={"Authorization": f"Bearer {READ_ONLY_TOKEN}"})
    assert forbidden.status_code == 403 and "error" in forbidden.json()
    assert gw.client.get("/scheduler/jobs", headers={"Authorization": ""}).status_code == 401

    # `system scheduler` lists the outstanding scheduler jobs from the read models.
    proc = gw.cli("system", "scheduler", "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["service_name"] == "ductile"
    assert report["count"] == len(report["active_polls"]) >= 1
    [poll] = [p for p in report["active_polls"] if p["job_id"] == sleepy["job_id"]]
    assert (poll["plugin"], poll["command"], poll["schedule_id"], poll["dedupe_key"], poll["status"],
            poll["attempt"]) == ("behave", "poll", "sleepy", "behave:poll:sleepy", "running", 1)
    assert poll["created_at"] and poll["started_at"]
    assert all(p["schedule_id"] for p in report["active_polls"])

    # `system breaker` on a breaker that never moved, and on an unknown plugin.
    proc = gw.cli("system", "breaker", "shellok", "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"plugin": "shellok", "command": "poll", "failure_count": 0, "transitions": []}
    proc = gw.cli("system", "breaker", "nope", "--json", "--config", str(gw.root))
    assert proc.returncode == 1 and "plugin not found: nope" in proc.stdout + proc.stderr

    # The read models answer with the gateway stopped, too.
    gw.stop()
    proc = gw.cli("system", "scheduler", "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    stopped = json.loads(proc.stdout)
    assert stopped["count"] == len(stopped["active_polls"])


# --- circuit breaker ---------------------------------------------------------------------------------


def test_failing_entry_opens_its_breaker_skips_then_sends_exactly_one_probe(gateway: Any) -> None:
    gw = gateway({"behave": {
        "enabled": True, "retry": {"max_attempts": 1}, "circuit_breaker": {"threshold": 3, "reset_after": "3s"},
        "schedules": [{"id": "flaky", "every": "1s", "payload": {"mode": "error_noretry"}}],
    }})
    wait_until(lambda: any(t[1] == "open" for t in transitions(gw, "behave")), 20, what="the breaker to open")
    # An API job of the plugin is never blocked, and never counts, while the breaker is open.
    api_job = gw.trigger("behave", payload={"mode": "ok"})
    assert gw.wait_job(api_job)["status"] == "succeeded"
    assert (breaker_row(gw, "behave") or ("?",))[0] in ("open", "half_open")
    entry = listing(gw)[("behave", "flaky")]
    assert entry["breaker_state"] in ("open", "half_open")

    # Wait for the probe to fail and reopen the breaker: open -> half_open -> open.
    def reopened() -> bool:
        return [t[1] for t in transitions(gw, "behave")][:3] == ["open", "half_open", "open"]

    wait_until(reopened, 20, what="the probe to fail and reopen the breaker")
    log = events(gw, BreakerTransitioned, ScheduleFired, ScheduleSkipped, JobEnqueued)
    moves = [(pos, e) for pos, e in log if isinstance(e, BreakerTransitioned)]
    (open_pos, opened), (half_pos, half), (reopen_pos, reopened_event) = moves[:3]
    assert (opened.from_state, opened.to_state, opened.failure_count, opened.reason) == (
        "closed", "open", 3, "failure_threshold")
    assert (half.from_state, half.to_state, half.reason) == ("open", "half_open", "cooldown_elapsed")
    assert half.at - opened.at >= 3 * S  # not before reset_after
    assert (reopened_event.from_state, reopened_event.reason, reopened_event.job_id) == (
        "half_open", "failure_threshold", half.job_id)
    assert reopened_event.opened_at is not None and reopened_event.opened_at > opened.opened_at

    fired_before_open = [e for pos, e in log if isinstance(e, ScheduleFired) and pos < open_pos]
    assert len(fired_before_open) == 3
    fired_while_open = [e for pos, e in log if isinstance(e, ScheduleFired) and open_pos < pos < reopen_pos]
    assert [e.job_id for e in fired_while_open] == [half.job_id]  # exactly one probe
    skipped_while_open = [e for pos, e in log if isinstance(e, ScheduleSkipped) and open_pos < pos < half_pos]
    assert skipped_while_open and {e.reason for e in skipped_while_open} == {"circuit_open"}
    api_enqueued = [e for _, e in log if isinstance(e, JobEnqueued) and e.job_id == api_job]
    assert api_enqueued and api_enqueued[0].schedule_id is None
    assert api_job not in {t[4] for t in transitions(gw, "behave")}

    # `system breaker` shows the state and the transitions, newest first.
    proc = gw.cli("system", "breaker", "behave", "--json", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["plugin"], report["command"]) == ("behave", "poll")
    assert report["state"] in ("open", "half_open") and report["failure_count"] >= 3
    ids = [t["id"] for t in report["transitions"]]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 3
    assert [t["reason"] for t in report["transitions"]][-3:] == ["failure_threshold", "cooldown_elapsed",
                                                                 "failure_threshold"]
    assert report["transitions"][-1]["to_state"] == "open" and report["transitions"][-1]["from_state"] == "closed"

    # `system reset` goes through the running gateway and closes the breaker.
    proc = gw.cli("system", "reset", "behave", "--config", str(gw.root), env={"DUCTILE_API_KEY": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Reset circuit breaker for behave (poll)"
    state = breaker_row(gw, "behave")
    assert state is not None and state[0] == "closed" and state[1] <= 2  # at most two new failures since
    resets = [t for t in transitions(gw, "behave") if t[3] == "manual_reset"]
    assert len(resets) == 1 and resets[0][1:3] == ("closed", 0)

    nope = gw.cli("system", "reset", "nope", "--config", str(gw.root), env={"DUCTILE_API_KEY": TOKEN})
    assert nope.returncode == 1
    assert "plugin not found: nope" in nope.stderr


# --- one-shots and restarts ----------------------------------------------------------------------------


def test_a_past_at_fires_once_and_stays_exhausted_across_restarts(gateway: Any) -> None:
    launch = {"id": "launch", "at": "2020-01-01T00:00:00Z"}
    gw = gateway({"shellok": {"enabled": True, "schedules": [launch]}})
    [job] = wait_until(lambda: scheduled_jobs(gw, "launch"), 15, what="the at entry to fire")
    assert gw.wait_job(job["job_id"])["status"] == "succeeded"
    wait_until(lambda: schedule_row(gw, "shellok", "launch")["status"] == "exhausted", 10, what="exhausted")
    row = schedule_row(gw, "shellok", "launch")
    assert (row["reason"], row["next_run_ns"], row["next_slot_ns"]) == ("one_shot_exhausted", None, None)
    entry = listing(gw)[("shellok", "launch")]
    assert (entry["status"], entry["mode"]) == ("exhausted", "at") and "next_run_at" not in entry

    # Restart with the same entry plus a marker that fires on the first pass.
    gw.stop()
    gw.set_plugins({"shellok": {"enabled": True, "schedules": [launch, {"id": "marker1", "every": "1h"}]}})
    gw.start()
    wait_until(lambda: scheduled_jobs(gw, "marker1"), 15, what="the first pass after restart")
    assert len(scheduled_jobs(gw, "launch")) == 1
    assert listing(gw)[("shellok", "launch")]["status"] == "exhausted"

    # Resetting a breaker that never opened succeeds as a no-op; with the gateway stopped it goes to the log.
    gw.stop()
    proc = gw.cli("system", "reset", "shellok", "--config", str(gw.root))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Reset circuit breaker for shellok (poll)"
    assert transitions(gw, "shellok") == [] and breaker_row(gw, "shellok") is None

    # Changing the at value re-plans the one-shot: it fires again, once.
    moved = {"id": "launch", "at": "2020-01-02T00:00:00Z"}
    gw.set_plugins({"shellok": {"enabled": True, "schedules": [moved, {"id": "marker2", "every": "1h"}]}})
    gw.start()
    wait_until(lambda: len(scheduled_jobs(gw, "launch")) == 2, 15, what="the changed at entry to fire again")
    wait_until(lambda: scheduled_jobs(gw, "marker2"), 15, what="the first pass after the change")
    wait_until(lambda: schedule_row(gw, "shellok", "launch")["status"] == "exhausted", 10, what="exhausted again")
    assert len(scheduled_jobs(gw, "launch")) == 2


def test_killing_the_gateway_after_a_scheduled_enqueue_never_fires_an_occurrence_twice(gateway: Any) -> None:
    gw = gateway({"shellok": {"enabled": True, "schedules": [{"id": "tick", "every": "1s"}]}})
    for _ in range(3):
        seen = len(scheduled_jobs(gw, "tick"))
        wait_until(lambda seen=seen: len(scheduled_jobs(gw, "tick")) > seen, 15, interval=0.005,
                   what="a scheduled enqueue")
        gw.kill9()  # right after the enqueue committed
        gw.start()
    seen = len(scheduled_jobs(gw, "tick"))
    wait_until(lambda: len(scheduled_jobs(gw, "tick")) >= seen + 2, 15, what="more fires after the last restart")
    gw.stop()

    fired = [e for _, e in events(gw, ScheduleFired) if e.schedule_id == "tick"]
    per_slot = Counter(e.slot for e in fired)
    assert per_slot and max(per_slot.values()) == 1, per_slot
    jobs = scheduled_jobs(gw, "tick")
    assert sorted(j["job_id"] for j in jobs) == sorted(e.job_id for e in fired)  # every job has its fire
    enqueued = [e for _, e in events(gw, JobEnqueued) if e.schedule_id == "tick"]
    assert len(enqueued) == len(fired) == len({e.job_id for e in enqueued})
    slots = sorted(per_slot)
    assert all(b - a >= S for a, b in pairwise(slots))


def test_a_restart_within_the_tick_interval_still_runs_the_pending_slot(gateway: Any) -> None:
    gw = gateway({"shellok": {"enabled": True, "schedules": [{"id": "steady", "every": "2s"}]}})
    # Every run must be over at the stop: a job still queued or running after the restart makes
    # the pending slot skip as already_running (if_running: skip), which is not this test.
    for _ in range(5):
        wait_until(lambda: [j for j in scheduled_jobs(gw, "steady") if j["status"] == "succeeded"], 15,
                   what="a scheduled run to succeed")
        gw.stop()
        if all(j["status"] == "succeeded" for j in scheduled_jobs(gw, "steady")):
            break
        gw.start()
    else:
        raise AssertionError("never stopped between two scheduled runs")
    pending = schedule_row(gw, "shellok", "steady")["next_slot_ns"]
    gw.start()  # default tick_interval 60s: the downtime is far shorter, nothing is "missed"
    wait_until(lambda: any(e.slot == pending for _, e in events(gw, ScheduleFired)), 15,
               what="the pending slot to fire after the restart")
    assert not [e for _, e in events(gw, ScheduleSkipped) if e.reason == "catch_up_skip"]


def test_after_counts_from_first_sighting_and_a_restart_does_not_move_it(gateway: Any) -> None:
    gw = gateway({"shellok": {"enabled": True, "schedules": [{"id": "later", "after": "4s"}]}})
    row = wait_until(lambda: (r := schedule_row(gw, "shellok", "later", required=False)).get("next_slot_ns") and r,
                     10, what="the after entry to be planned")
    planned = row["next_slot_ns"]
    assert planned == row["first_seen_ns"] + 4 * S
    assert listing(gw)[("shellok", "later")]["mode"] == "after"
    gw.stop()
    gw.start()
    assert schedule_row(gw, "shellok", "later")["next_slot_ns"] == planned
    [job] = wait_until(lambda: scheduled_jobs(gw, "later"), 15, what="the after entry to fire")
    assert job["created_ns"] >= planned
    [fired] = [e for _, e in events(gw, ScheduleFired) if e.schedule_id == "later"]
    assert fired.slot == planned and fired.exhausted
    wait_until(lambda: schedule_row(gw, "shellok", "later")["status"] == "exhausted", 10, what="exhausted")


def test_startup_catch_up_policies_after_downtime(gateway: Any) -> None:
    entries = [
        {"id": "all", "every": "1s", "catch_up": "run_all"},
        {"id": "once", "every": "1s", "catch_up": "run_once"},
        {"id": "skip", "every": "1s"},
    ]
    gw = gateway({"shellok": {"enabled": True, "parallelism": 4, "schedules": entries}},
                 service={"tick_interval": "200ms"})
    for sid in ("all", "once", "skip"):
        wait_until(lambda sid=sid: scheduled_jobs(gw, sid), 15, what=f"the first fire of {sid}")
    gw.stop()
    before = {sid: schedule_row(gw, "shellok", sid)["next_slot_ns"] for sid in ("all", "once", "skip")}
    boot_log = len(events(gw, ScheduleFired, ScheduleSkipped))
    time.sleep(3.5)  # downtime: the slots it spans are what this test is about
    gw.start()
    wait_until(lambda: [e for _, e in events(gw, ScheduleSkipped) if e.reason == "catch_up_skip"], 15,
               what="startup catch-up")
    since = [e for _, e in events(gw, ScheduleFired, ScheduleSkipped)[boot_log:]]

    caught = [e for e in since if isinstance(e, ScheduleFired) and e.catch_up and e.schedule_id == "all"]
    assert len(caught) >= 3
    assert caught[0].slot == before["all"]
    assert [e.slot for e in caught] == [before["all"] + k * S for k in range(len(caught))]  # oldest first
    with closing(gw.db()) as db:
        keys = dict(db.execute("SELECT job_id, dedupe_key FROM job_queue WHERE schedule_id='all'").fetchall())
    expected = {e.job_id: "shellok:poll:all:catchup:" + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.slot // S))
                for e in caught}
    assert {j: keys[j] for j in expected} == expected
    assert len(set(expected.values())) == len(caught)

    once = [e for e in since if isinstance(e, ScheduleFired) and e.catch_up and e.schedule_id == "once"]
    assert len(once) == 1
    [skip] = [e for e in since if isinstance(e, ScheduleSkipped) and e.schedule_id == "skip"][:1]
    assert (skip.reason, skip.catch_up, skip.slot) == ("catch_up_skip", True, before["skip"])
    assert skip.missed is not None and skip.missed >= 3
    assert skip.next_slot_at is not None and (skip.next_slot_at - before["skip"]) % S == 0  # phase kept
    assert not [e for e in since if isinstance(e, ScheduleFired) and e.catch_up and e.schedule_id == "skip"]
    for job_id in expected:
        assert gw.wait_job(job_id)["status"] == "succeeded"
        assert gw.job(job_id)["submitted_by"] == "ductile"


def test_if_running_skip_and_queue_bound_outstanding_jobs_and_serialise_runs(gateway: Any) -> None:
    slow = {"mode": "sleep", "seconds": 1.5}
    gw = gateway({"behave": {"enabled": True, "parallelism": 4, "schedules": [
        {"id": "skipper", "every": "500ms", "payload": slow},
        {"id": "queuer", "every": "500ms", "payload": slow, "if_running": "queue", "max_outstanding_polls": 2},
    ]}})

    def done(sid: str) -> list[Any]:
        with closing(gw.db()) as db:
            return db.execute("SELECT created_at, started_at, completed_at FROM job_queue WHERE schedule_id=?"
                              " AND status='succeeded' ORDER BY created_ns", (sid,)).fetchall()

    wait_until(lambda: len(done("queuer")) >= 3 and len(done("skipper")) >= 2, 20, what="several slow runs")
    gw.stop()
    with closing(gw.db()) as db:
        rows = {sid: db.execute("SELECT created_at, started_at, completed_at FROM job_queue WHERE schedule_id=?"
                                " ORDER BY created_ns", (sid,)).fetchall() for sid in ("skipper", "queuer")}

    def max_overlap(intervals: list[tuple[str, str]]) -> int:
        points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda p: (p[0], p[1]))
        level = peak = 0
        for _, step in points:
            level += step
            peak = max(peak, level)
        return peak

    far = "9999-12-31T00:00:00.000000Z"
    for sid, limit in (("skipper", 1), ("queuer", 2)):
        outstanding = [(c, done_at or far) for c, _, done_at in rows[sid]]
        running = [(s, done_at or far) for _, s, done_at in rows[sid] if s]
        assert max_overlap(outstanding) <= limit, (sid, rows[sid])
        assert max_overlap(running) == 1, (sid, rows[sid])  # one after another
    assert max_overlap([(c, d or far) for c, _, d in rows["queuer"]]) == 2  # queue really queues
    reasons = {e.reason for _, e in events(gw, ScheduleSkipped)}
    assert {"already_running", "outstanding_limit"} <= reasons


def test_if_running_cancel_kills_the_running_job_and_does_not_count_it(gateway: Any, tmp_path: Path) -> None:
    piddir = tmp_path / "pids"
    piddir.mkdir()
    gw = gateway({"pidsleep": {"enabled": True, "retry": {"max_attempts": 1},
                               "circuit_breaker": {"threshold": 1, "reset_after": "1h"},
                               "schedules": [{"id": "restless", "every": "2s", "if_running": "cancel",
                                              "payload": {"piddir": str(piddir), "seconds": 60}}]}},
                 service={"shutdown_grace": "1s"})
    [first] = wait_until(lambda: scheduled_jobs(gw, "restless"), 15, what="the first fire")
    [pidfile] = wait_until(lambda: [p for p in piddir.iterdir() if not p.name.endswith(".tmp")], 15,
                           what="the plugin to start")
    pids = [int(p) for p in pidfile.read_text().split()]
    job = gw.wait_job(first["job_id"], statuses={"dead"}, timeout=15)
    assert job["last_error"] == "cancelled by scheduler (if_running=cancel)"
    assert job.get("result") is None  # the output of a cancelled run is discarded
    for pid in pids:  # the plugin and its child: the whole process group
        wait_until(lambda pid=pid: not process_alive(pid), 10, what=f"pid {pid} to die")
    later = wait_until(lambda: at_least(2, scheduled_jobs(gw, "restless")), 10, what="the cancelling occurrence")
    assert later[1]["status"] in ("queued", "running", "dead")
    assert breaker_row(gw, "pidsleep") in (None, ("closed", 0))  # threshold 1, yet nothing counted
    assert not transitions(gw, "pidsleep")
    dead = [e for _, e in events(gw, JobDead) if e.job_id == first["job_id"]]
    assert [e.reason for e in dead] == ["cancelled by scheduler (if_running=cancel)"]
