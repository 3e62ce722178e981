"""`python -m tests.chaos`: one chaos run against the database in DATABASE_URL (default: the embedded SQLite).

`make chaos` runs it through tests/chaos/test_chaos.py, which gives it a fresh test database; run by hand it
needs a migrated database with no orders in it (the fake Kite numbers its orders from 1 every run, and broker
order ids are unique). The size comes from the environment:

    CHAOS_ORDERS (40)  CHAOS_KILLS (8)  CHAOS_KILL_INTERVAL (1.0 s)  CHAOS_WORKERS (2)  CHAOS_CONCURRENCY (2)
    CHAOS_REDIS_RESTARTS (1)  CHAOS_SETTLE_SECONDS (60)  CHAOS_SEED (time)  CHAOS_REPORT (a JSON file to write)

The grace periods are cut to ORDERS_SUBMITTING_GRACE_SECONDS=8 and ORDERS_UNKNOWN_GRACE_SECONDS=4 so the run
settles in seconds. That is safe only because every broker call here is bounded far below 8 s: the fake
answers a placement within 0.3 s, Kite's order rate gate waits at most 1.5 s, and a Redis that is down
refuses connections at once. A SUBMITTING order older than 8 s therefore belongs to a dead worker, and an
UNKNOWN order still absent from the book 4 s later never reached it. With real Kite (7 s client timeout,
network stalls) keep the defaults (180 s and 120 s).

Exit status: 0 when the OMS and the broker agree (no duplicate, nothing lost), 1 otherwise, 2 when the run could
not be completed (workers that would not start, an engine thread that died).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from tests.chaos.infra import ChaosKite, PrivateRedis
from tradingsite.config import BASE_DIR, var_dir_from_env

KITE_MOCKS = (BASE_DIR.parent / "shared" / "data" / "kite-mocks").resolve()
SHORT_GRACES = {"ORDERS_SUBMITTING_GRACE_SECONDS": "8", "ORDERS_UNKNOWN_GRACE_SECONDS": "4"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _number(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        sys.exit(f"configuration error: {name} must be a number, got {raw!r}")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: workers, Kite and Redis are stopped


def main() -> int:
    env = dict(os.environ)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if not KITE_MOCKS.is_dir():
        print(f"chaos: {KITE_MOCKS} is missing (the fake Kite serves its bodies)", file=sys.stderr)
        return 2
    var_dir = var_dir_from_env(env) / "chaos"
    seed = int(_number(env, "CHAOS_SEED", time.time_ns() % 1_000_000))
    private = PrivateRedis(var_dir / "redis", _free_port()).start()
    kite = ChaosKite(KITE_MOCKS, max_delay=0.3, seed=seed).start()
    try:
        os.environ.update(
            REDIS_URL=private.url,
            CELERY_BROKER_URL=private.url,
            TRADING_MODE="live",
            RISK_MARKET_HOURS="false",  # a Kite account at any hour: the session check is tested in tests/risk
            KITE_API_KEY="chaoskey",
            KITE_API_SECRET="chaos-secret",
            KITE_API_ROOT=kite.url,
            **SHORT_GRACES,
        )
        # tests.settings: the real settings plus test-only defaults (SECRET_KEY, encryption key) where unset.
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
        import django

        django.setup()
        from tests.chaos.session import run_session

        report = run_session(env=env, seed=seed, kite=kite, redis_server=private, var_dir=var_dir)
    except RuntimeError as exc:  # workers that would not start, a thread of the engine that died
        print(f"chaos: could not complete the run: {exc}", file=sys.stderr)
        return 2
    finally:
        kite.stop()
        private.stop()
    _print(report)
    if env.get("CHAOS_REPORT"):
        Path(env["CHAOS_REPORT"]).write_text(json.dumps(report, indent=1, default=str))
    return 0 if report["verdict"]["clean"] else 1


def _print(report: dict[str, Any]) -> None:
    v, t = report["verdict"], report["tally"]
    kills = sum(t["kills"].values())
    print(
        f"chaos: orders {v['orders']}, kills {kills} {t['kills']} ({t['kills_mid_call']} with a placement in "
        f"flight), redis restarts {t['redis_restarts']} (losing {t['messages_lost']} messages), faults {t['faults']}"
    )
    print(f"chaos: duplicates {v['duplicates']}, lost {v['lost']} (of which unsettled {v['unsettled']})")
    print(
        f"chaos: matched at the broker {v['matched']}, never sent {v['never_sent']}, orphans {v['orphans']}, "
        f"positions off {v['positions_off']}, through UNKNOWN {report['through_unknown']}, "
        f"found in the book by tag {report['found_by_reconciliation']}"
    )
    print("chaos: final statuses " + ", ".join(f"{k} {n}" for k, n in v["statuses"].items()))
    print(
        f"chaos: fills {t['fills']}, cancels {t['cancels']}, not committed {t['not_committed']}, "
        f"enqueue failed {t['enqueue_failed']}, re-enqueued by the sweep {t['requeued']}, "
        f"sweeps {t['sweeps']}, reconciles {t['reconciles']}, errors {t['errors']}"
    )
    print(f"chaos: settled in {report['settle_seconds']:.1f}s, {report['seconds']:.1f}s in all, seed {report['seed']}")
    for problem in v["problems"][:20]:
        print(f"chaos: PROBLEM {problem}")
    print(f"chaos: {'OK' if v['clean'] else 'FAILED'}")


if __name__ == "__main__":
    sys.exit(main())
