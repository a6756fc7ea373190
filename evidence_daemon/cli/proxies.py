"""``proxies``: the viewing-copy queue, its failures and retries."""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..i18n import _, word
from ..media.jobs import ProxyQueue, ProxyState
from ..media.proxy import ProxyWorker
from ..station import open_station
from .exit_codes import ExitCode


def cmd_proxies(config: Config, args: argparse.Namespace) -> ExitCode:
    station = open_station(config, connect_archive=args.run)
    try:
        queue = ProxyQueue(station.database, station.clock)
        requeued = queue.retry_failed() if args.retry_failed else 0
        ran: dict[ProxyState, int] | None = None
        if args.run:
            ran = ProxyWorker.from_station(station).run_pending()
        else:
            queue.enqueue_archived()
        report = queue.report()
    finally:
        station.close()
    report["requeued"] = requeued
    report["ran"] = ran
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return ExitCode.OK
    if args.retry_failed:
        print(_("requeued {count} failed proxy job(s)").format(count=requeued))
    if ran is not None:
        print(_("made now: ") + (", ".join(f"{n} {word(state)}" for state, n in sorted(ran.items()))
                                 or _("nothing was due")))
    print(_("proxies") + "  "
          + "  ".join(f"{word(state)} {n}" for state, n in report["counts"].items()))
    for problem in report["problems"]:
        retry = (_(", next try {time}").format(time=problem['next_attempt_at'])
                 if problem["next_attempt_at"] else "")
        print(f"  {problem['sha256'][:12]}  " + _(
            "{state} after {attempts} attempt(s){retry}: {reason}").format(
                state=word(problem['state']), attempts=problem['attempts'], retry=retry,
                reason=problem['reason']))
    return ExitCode.OK
