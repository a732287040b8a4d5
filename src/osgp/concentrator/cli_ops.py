"""``osgp op``: fleet operations from the command line, over CN/IP channels.

``osgp op KIND --store URL --channel NAME=URL [--device ID ...]`` runs one
operation (:func:`osgp.concentrator.operations.kinds`) as a store job on the
commissioned meters of the channels' segments and prints one line per meter;
``osgp op resume`` goes on with the store's open operation jobs and
``osgp op report JOB`` prints a job's outcomes without touching a meter.
Exit status: 0 when every target is confirmed, 3 otherwise, 1 on an error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Dict, List, Optional, Sequence

from osgp.concentrator import ops_control, tariffs
from osgp.concentrator.aio import (
    QUICK_RETRIES,
    AsyncChannel,
    AsyncRuntime,
    attach_channels,
    close_channels,
    plc_profile,
)
from osgp.concentrator.engine import Concentrator, StatusPolicy
from osgp.concentrator.firmware import add_firmware_arguments, firmware_cli_params
from osgp.concentrator.operations import TASKS, Operations
from osgp.concentrator.operations import kinds as op_kinds
from osgp.errors import OSGPError

__all__ = ["add_ops_command", "run_operation"]

_POLL_S = 0.05  # how often the runner checks whether its targets are all done


async def run_operation(
    store: Any,
    channels: Dict[str, str],
    kind: str,
    *,
    params: Optional[Dict[str, Any]] = None,
    devices: Optional[Sequence[int]] = None,
    policy: StatusPolicy = QUICK_RETRIES,
    profile: Any = None,
    max_outstanding: int = 1,
) -> List[int]:
    """Run operation ``kind`` (or ``"resume"``) on the commissioned meters of
    the segments in ``channels`` (segment name -> transport URL); returns the
    job ids, each finished (every target confirmed, failed or given up)."""
    eng = Concentrator(store, AsyncRuntime(), policy=policy)
    opened: List[AsyncChannel] = []
    tasks: List[asyncio.Future] = []
    try:
        await attach_channels(eng, channels, opened, tasks, max_outstanding, profile)
        ops = Operations(eng, settle_s=policy.retry_s)
        chain = tariffs.Tariffs(ops).chain  # a tou job goes on to tou-arm or tou-rollback
        jobs = ops.resume() if kind == "resume" else [ops.submit(kind, params or {}, devices)]
        while not ops.idle:
            await asyncio.sleep(_POLL_S)
            for t in tasks:
                if t.done():
                    t.result()  # raises what stopped the channel
                    raise OSGPError("a channel stopped before the operation ended")
        return jobs + [j for j in chain.values() if j not in jobs]
    finally:
        await close_channels(opened, tasks)


def add_ops_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``op`` to an ``argparse`` subparsers object (``func`` set)."""
    op = subparsers.add_parser("op", help="fleet operations on meters as tracked store jobs")
    kinds = op.add_subparsers(dest="op_kind", required=True)
    for kind in (*op_kinds(), "resume", "report"):
        p = kinds.add_parser(kind, help=_HELP.get(kind) or TASKS[kind].help)
        p.add_argument("--store", required=True, help="SQLAlchemy URL of the store")
        p.add_argument(
            "--key-env",
            default="OSGP_MASTER_KEY",
            help="environment variable holding the store's master key as hex",
        )
        if kind == "report":
            p.add_argument("job", type=int, help="the job id")
            continue
        if kind.startswith("group-"):
            p.add_argument("group", type=int, help="group id 1..65534")
        ops_control.add_arguments(kind, p)
        tariffs.add_cli_arguments(kind, p)
        if kind == "firmware":
            add_firmware_arguments(p)
        p.add_argument(
            "--channel",
            action="append",
            required=True,
            metavar="NAME=URL",
            help="segment name and its transport URL (repeatable)",
        )
        if kind != "resume":
            p.add_argument(
                "--device", type=int, action="append", help="device id (default: every meter)"
            )
        p.add_argument("--attempts", type=int, default=4, help="attempts per meter")
        p.add_argument("--retry", type=float, default=1.0, help="seconds before a retry")
        p.add_argument("--response-ms", type=int, default=None, help="session response timer")
    op.set_defaults(func=_op)
    return op


_HELP = {
    "clock-sync": "set meter clocks that drift (BP10 for large drifts, EP16 for small ones)",
    "disconnect": "open the contactor (EP23)",
    "reconnect": "close the contactor (EP23)",
    "demand-reset": "reset the demands (EP34)",
    "self-read": "record a self read (EP12)",
    "group-add": "add the meters to a group (EP27)",
    "group-remove": "remove the meters from a group (EP27)",
    "key-renewal": "renew each meter's unicast key (EP45, INFERRED; old key kept until confirmed)",
    "firmware": "download a firmware image (EP08/EP09 by broadcast and repair/EP10)",
    "resume": "go on with the store's open operation jobs",
    "report": "print a job's per-meter outcomes",
}


def _op(args: argparse.Namespace) -> int:
    from osgp.concentrator import KeyVault, Store

    try:
        store = Store(args.store, vault=KeyVault.from_env(args.key_env))
    except OSGPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.op_kind == "report":
            jobs = [args.job]
        else:
            channels = {}
            for spec in args.channel:
                name, sep, url = spec.partition("=")
                if not sep:
                    print(f"error: --channel {spec!r}: NAME=URL", file=sys.stderr)
                    return 2
                channels[name] = url
            params = {"group": args.group} if args.op_kind.startswith("group-") else {}
            params.update(ops_control.params_of(args.op_kind, args))
            params = tariffs.cli_params(args, store) or params
            if args.op_kind == "firmware":
                params = firmware_cli_params(args)
            jobs = asyncio.run(
                run_operation(
                    store,
                    channels,
                    args.op_kind,
                    params=params,
                    devices=getattr(args, "device", None),
                    policy=StatusPolicy(attempts=args.attempts, retry_s=args.retry),
                    profile=None if args.response_ms is None else plc_profile(args.response_ms),
                )
            )
        all_ok = True
        for job_id in jobs:
            job = store.job(job_id)
            for o in store.outcomes(job_id):
                code = "" if o.code is None else f" code {o.code}"
                print(f"job {job_id} {job.kind} device {o.device_id}: {o.state}{code} {o.detail}")
                all_ok &= o.state == "confirmed"
    except OSGPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0 if all_ok else 3
