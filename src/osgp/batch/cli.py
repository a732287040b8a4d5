"""``osgp decode``: capture archives to a Parquet dataset, with a summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from osgp.batch import lines, store
from osgp.batch.archive import open_capture, read_frames
from osgp.batch.pipeline import FATES, REASONS, Report
from osgp.batch.run import decode_captures
from osgp.errors import OSGPError

__all__ = ["add_decode_command", "summary"]


def add_decode_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``decode`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "decode",
        help="decode pcapng/pcap captures (plain, .gz, .zst) of CN/IP traffic to Parquet",
        description="Pair, verify, reassemble and decode the OSGP exchanges of capture files "
        "into a Parquet dataset partitioned by day (docs/batch.md).",
    )
    p.add_argument(
        "captures",
        nargs="+",
        metavar="CAPTURE",
        help="pcapng or pcap files, line captures (#osgp-frames 1), store:URL[#segment]",
    )
    p.add_argument(
        "--keys",
        help="key file: JSON {device: key hex} or CSV device,key; or store:URL, the legacy "
        "keys of a concentrator's store (with its master key)",
    )
    p.add_argument("--out", help="dataset directory (omit to decode and report only)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument(
        "--dask",
        "--scheduler",
        dest="dask",
        metavar="local|tcp://HOST:PORT",
        help="run on Dask: a local cluster, or an existing scheduler",
    )
    p.add_argument(
        "--partition",
        default="day",
        help="hive partition columns: day or day,meter (default day)",
    )
    p.add_argument("--strict", action="store_true", help="a damaged capture fails its file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--inspect", action="store_true", help="only print what each capture holds, decode nothing"
    )
    p.set_defaults(func=_decode)
    return p


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        width = 30
        fill = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} files")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def summary(r: Report) -> str:
    """The report as text: counts, rejections with examples, throughput."""
    secs = max(r.seconds, 1e-9)
    lines = [
        f"files {r.files}, {r.bytes / 1e6:.1f} MB, packets {r.packets}",
        "frames: " + ", ".join(f"{k} {r.frames[k]}" for k in FATES if r.frames[k]),
        f"paired {r.exchanges}, verified {r.verified}, writes {r.writes}, images {r.images}",
        "rows: " + ", ".join(f"{k} {v}" for k, v in r.rows.items()),
    ]
    rejected = sum(r.rejected.values())
    lines.append(f"rejected {rejected}" + (":" if rejected else ""))
    for reason in REASONS:
        if r.rejected[reason]:
            lines.append(f"  {reason} {r.rejected[reason]}")
            lines += [f"    e.g. {e}" for e in r.examples.get(reason, [])]
    if r.capture:
        lines.append("capture: " + ", ".join(f"{k} {v}" for k, v in sorted(r.capture.items())))
    lines.append(
        f"{r.seconds:.2f} s: {r.packets / secs:,.0f} frames/s, {r.bytes / secs / 1e6:.1f} MB/s; "
        f"{r.cpu_seconds:.2f} CPU s: {r.packets / max(r.cpu_seconds, 1e-9):,.0f} frames/CPU s"
    )
    return "\n".join(lines)


def _inspect(paths: Any) -> int:
    for path in paths:
        if store.is_store(path):
            print(
                f"{path}: " + ", ".join(f"{k} {v}" for k, v in store.store_frames(path)[1].items())
            )
            continue
        data = open_capture(path)
        if lines.is_line_capture(data):
            lf, info = lines.parse_lines(data, strict=False)
            info["by link"] = {
                f"{lines.LINKS[k]} {lines.DIRECTIONS[d]}": int(
                    ((lf.link == k) & (lf.direction == d)).sum()
                )
                for k in range(len(lines.LINKS))
                for d in (0, 1)
            }
            info["devices"] = len(lf.devices)
        else:
            info = read_frames(data, strict=False)[1]
        fault = info.pop("fault")
        print(f"{path}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
        if fault is not None:
            print(f"  first fault: {fault[0]} at offset {fault[1]}")
    return 0


def _decode(args: argparse.Namespace) -> int:
    if args.inspect:
        try:
            return _inspect(args.captures)
        except (OSGPError, OSError) as exc:
            print(f"osgp decode: {exc}", file=sys.stderr)
            return 1
    try:
        report = decode_captures(
            args.captures,
            args.out,
            keys=args.keys,
            jobs=args.jobs,
            dask=args.dask,
            partition=tuple(p.strip() for p in args.partition.split(",") if p.strip()),
            strict=args.strict,
            progress=_progress,
        )
    except (OSGPError, OSError) as exc:
        print(f"osgp decode: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=1) if args.json else summary(report))
    return 0
