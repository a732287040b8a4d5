"""Captures to a Parquet dataset: one partition per input file, on all cores
or on Dask.

Each file is one task (:func:`decode_file`): read, decode, and write its
own Parquet files under ``OUT/<dataset>/day=YYYY-MM-DD[/meter=...]/``
(hive partitioning), named after the file's position in the run so tasks
never collide.  A task returns its :class:`~osgp.batch.pipeline.Report` as
plain data; the run merges them.  Datasets: ``images`` (every reassembled
table image), ``registers`` (BT23 and BT28, one row per numeric field element),
``load_profile`` (BT64, one row per interval and channel) and ``events``
(BT74).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from osgp.batch import lines, store
from osgp.batch.archive import open_capture, read_frames
from osgp.batch.keys import KeyFile, KeyLookup, StaticKeys
from osgp.batch.pipeline import Decoded, Image, Repeated, Report, decode_images, frame_images
from osgp.errors import ConfigurationError, DecodeError, TruncatedError

__all__ = ["DATASETS", "schemas", "decode_file", "decode_captures", "to_arrow"]

DATASETS = ("images", "registers", "load_profile", "events")
PARTITIONS = ("day", "meter")


def schemas() -> Dict[str, Any]:
    import pyarrow as pa

    ts = pa.timestamp("s", tz="UTC")
    common = [("device", pa.string())]
    return {
        "images": pa.schema(
            common
            + [
                ("table", pa.int32()),
                ("time", pa.timestamp("ns", tz="UTC")),
                ("data", pa.binary()),
            ]
        ),
        "registers": pa.schema(
            common
            + [
                ("time", ts),
                ("table", pa.int32()),  # 23 (BT23) or 28 (BT28)
                ("field", pa.string()),
                ("value", pa.float64()),
                ("at", ts),
            ]
        ),
        "load_profile": pa.schema(
            common
            + [
                ("time", ts),
                ("channel", pa.uint8()),
                ("value", pa.int64()),
                ("scaled", pa.float64()),
                ("status", pa.uint8()),
                ("flags", pa.uint8()),
            ]
        ),
        "events": pa.schema(
            common
            + [
                ("time", ts),
                ("event_number", pa.uint16()),
                ("seq", pa.uint16()),
                ("user_id", pa.uint16()),
                ("code", pa.uint16()),
                ("mfg", pa.bool_()),
                ("name", pa.string()),  # osgp.tables.events
                ("argument", pa.binary()),
            ]
        ),
    }


def to_arrow(d: Decoded) -> Dict[str, Any]:
    """The decoded rows as one ``pyarrow.Table`` per dataset (explicit schemas)."""
    import pyarrow as pa

    sch = schemas()
    out = {
        "images": pa.table(
            {
                "device": pa.array([str(im.device) for im in d.images], pa.string()),
                "table": pa.array([im.table for im in d.images], pa.int32()),
                "time": pa.array(
                    np.array([im.ts_ns for im in d.images], dtype=np.int64),
                    pa.timestamp("ns", tz="UTC"),
                ),
                "data": pa.array([im.data for im in d.images], pa.binary()),
            },
            schema=sch["images"],
        )
    }
    for name, cols in (
        ("registers", d.registers),
        ("load_profile", d.load_profile),
        ("events", d.events),
    ):
        schema = sch[name]
        arrays = []
        for f in schema:
            parts = cols[f.name]
            if parts and isinstance(parts[0], Repeated):
                items = [x for p in parts for x in p.items]
                counts = np.concatenate([p.counts for p in parts])
                take = np.repeat(np.arange(len(items)), counts)
                arrays.append(pa.array(items, f.type).take(pa.array(take)))
                continue
            v = np.concatenate(parts) if parts else np.array([], dtype=object)
            if pa.types.is_timestamp(f.type):
                v = v.astype(np.int64)
                arrays.append(
                    pa.array(v, pa.int64(), mask=v == np.iinfo(np.int64).min).cast(f.type)
                )
            elif v.dtype == object or not len(v):
                arrays.append(pa.array(list(v), f.type))
            else:
                arrays.append(pa.array(v, f.type))
        out[name] = pa.Table.from_arrays(arrays, schema=schema)
    return out


def _days(table: Any) -> np.ndarray:
    """Each row's UTC day (days since 1970-01-01, from the ``time`` column)."""
    import pyarrow as pa

    t = table["time"]
    per_day = {"s": 86400, "ns": 86400 * 1_000_000_000}[t.type.unit]
    return np.floor_divide(t.cast(pa.int64()).to_numpy(zero_copy_only=False), per_day)


def write_tables(
    tables: Dict[str, Any], out: str, token: str, partition: Sequence[str] = ("day",)
) -> Dict[str, int]:
    """Write each non-empty table under OUT/<dataset>/ with hive partitions
    (``day=YYYY-MM-DD[/meter=...]``), one file per partition, the partition
    columns in the path only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: Dict[str, int] = {}
    for name, t in tables.items():
        rows[name] = t.num_rows
        if not t.num_rows:
            continue
        day = _days(t)
        if "meter" in partition:
            meters, mcode = np.unique(
                t["device"].to_numpy(zero_copy_only=False), return_inverse=True
            )
            key = day * len(meters) + mcode
        else:
            meters, key = np.array([""]), day
        order = np.argsort(key, kind="stable")
        k = key[order]
        cuts = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
        sorted_t = t.take(pa.array(order)) if len(cuts) > 2 else t
        for a, b in zip(cuts[:-1], cuts[1:]):
            part = sorted_t.slice(a, b - a)
            d = int(day[order[a]])
            where = [f"day={np.datetime64(d, 'D')}"]
            if "meter" in partition:
                where.append(f"meter={meters[int(k[a]) - d * len(meters)]}")
            path = os.path.join(out, name, *where)
            os.makedirs(path, exist_ok=True)
            pq.write_table(part, os.path.join(path, f"part-{token}-0.parquet"))
    return rows


def _keys(keys: Union[None, str, os.PathLike, KeyLookup]) -> KeyLookup:
    if keys is None:
        return StaticKeys({})
    if isinstance(keys, (str, os.PathLike)):
        return KeyFile(keys)
    return keys


def decode_file(
    path: str,
    keys: Union[None, str, KeyLookup],
    out: Optional[str],
    token: str,
    partition: Sequence[str] = ("day",),
    strict: bool = False,
) -> Dict[str, Any]:
    """One task: a capture file to Parquet under ``out`` (None: decode only).
    Returns the file's report as plain data.  A capture that cannot be read
    at all (not a capture, bad compression) is a rejection, not an exception."""
    t0, c0 = time.perf_counter(), time.process_time()
    report = Report(files=1)
    images = _images(path, _keys(keys), strict, report)
    if images is not None:
        _write(report, decode_images(images, report), out, token, partition)
    report.seconds = time.perf_counter() - t0
    report.cpu_seconds = time.process_time() - c0
    report.worker_cpu[str(os.getpid())] = report.cpu_seconds
    return report.as_dict()


def _images(path: str, keys: KeyLookup, strict: bool, report: Report) -> Optional[List[Image]]:
    """The table images of one capture (pcapng, pcap, a line capture or a
    concentrator store's kept frames), or None when it cannot be read at all
    (rejected)."""
    if store.is_store(path):
        frames, info = store.store_frames(path)
        report.packets, report.bytes = len(frames), info["bytes"]
        return frame_images(frames, keys, report)
    try:
        data = open_capture(path)
        report.bytes = len(data)
        if lines.is_line_capture(data):
            lf, info = lines.parse_lines(data, strict=strict)
        else:
            frames, info = read_frames(data, strict=strict)
    except DecodeError as exc:
        reason = "truncated" if isinstance(exc, TruncatedError) else "bad_block"
        report.reject(reason, f"{path}: {exc}")
        return None
    if lines.is_line_capture(data):
        report.packets = len(lf)
        if info["bad"]:
            report.capture["bad_lines"] = info["bad"]
            report.reject("bad_block", f"{path}: {info['fault'][0]}", info["bad"])
        return lines.line_images(lf, keys, report)
    report.packets = int(info["packets"])
    for k in ("skipped", "unknown", "bad", "truncated"):
        if info[k]:
            report.capture[k] = int(info[k])
    for k, v in info["cnip"].items():
        if v:
            report.capture[f"cnip_{k}"] = v
    if info["fault"] is not None:
        what, off = info["fault"]
        for reason, n in (("truncated", info["truncated"]), ("bad_block", info["bad"])):
            if n:
                report.reject(reason, f"{path}: {what} at offset {off}", int(n))
    return frame_images(frames, keys, report)


def _write(
    report: Report, decoded: Decoded, out: Optional[str], token: str, partition: Sequence[str]
) -> None:
    tables = to_arrow(decoded)
    if out is not None:
        report.rows.update(write_tables(tables, out, token, partition))
    else:
        report.rows.update({k: t.num_rows for k, t in tables.items()})


def decode_captures(
    paths: Sequence[str],
    out: Optional[str],
    *,
    keys: Union[None, str, KeyLookup] = None,
    jobs: Optional[int] = None,
    dask: Optional[str] = None,
    partition: Sequence[str] = ("day",),
    strict: bool = False,
    progress: Any = None,
) -> Report:
    """Decode every capture, one task per file: in this process (``jobs=1``),
    on a process pool (``jobs`` processes, default all cores) or on Dask
    (``dask="local"``: a LocalCluster on loopback; ``"tcp://host:port"``: an
    existing scheduler).  ``progress(done, total)`` is called as files finish."""
    bad = [p for p in partition if p not in PARTITIONS]
    if bad:
        raise ConfigurationError(f"partition by {', '.join(bad)}: choose from day, meter")
    if "day" not in partition:
        partition = ("day",) + tuple(partition)
    if (
        keys is not None
        and not isinstance(keys, (str, os.PathLike, StaticKeys))
        and (jobs != 1 or dask)
    ):  # StaticKeys are plain data, sent to each task; another lookup may not be
        raise ConfigurationError("a KeyLookup object other than StaticKeys runs in-process only")
    keyarg = os.fspath(keys) if isinstance(keys, (str, os.PathLike)) else keys
    if keyarg is not None and isinstance(keyarg, str):
        KeyFile(keyarg)  # a bad key file fails here, not in every task
    t0 = time.perf_counter()
    args = [
        (
            p if store.is_store(p) else os.fspath(p),
            keyarg,
            out,
            f"{i:05d}",
            tuple(partition),
            strict,
        )
        for i, p in enumerate(paths)
    ]
    total = Report()
    results: List[Dict[str, Any]] = []

    def done(r: Dict[str, Any]) -> None:
        results.append(r)
        if progress is not None:
            progress(len(results), len(args))

    if dask:
        _run_dask(dask, args, done)
    elif jobs == 1 or len(args) <= 1:
        for a in args:
            done(decode_file(*a))
    else:
        with ProcessPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            for r in pool.map(decode_file, *zip(*args)):
                done(r)
    for r in results:
        total.merge(Report.from_dict(r))
    total.seconds = time.perf_counter() - t0
    return total


def _run_dask(where: str, args: List[tuple], done: Any) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigurationError("--dask needs dask[distributed]: pip install osgp[dask]") from None
    if where == "local":
        cluster = LocalCluster(
            n_workers=min(len(args), os.cpu_count() or 1) or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        )
        client = Client(cluster)
    elif where.startswith("tcp://"):
        cluster, client = None, Client(where)
    else:
        raise ConfigurationError(f"--dask {where!r}: 'local' or a tcp://host:port scheduler")
    try:
        futures = [client.submit(decode_file, *a, pure=False) for a in args]
        for fut in as_completed(futures):
            done(fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
