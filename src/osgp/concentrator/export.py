"""Exports of collected readings: Arrow tables, Parquet, CSV and JSON.

Every table names its meter (``neuron_id`` as hex, ``serial``) and carries
UTC times: ``timestamp[s, tz=UTC]`` in Arrow, UTC-adjusted milliseconds in
Parquet (it has no seconds unit), ISO 8601 text
(``2026-12-01T00:15:00Z``) in CSV and JSON.  Interval status is decoded to
names: ``flags`` from the common flags in bits 0-3 (``osgp.loadprofile.FLAG_*``,
[OPT p.36]) and ``channel_status`` from the code in bits 4-7
(``osgp.loadprofile.CHANNEL_STATUS``).  An interval's unit is the device's
``meta["channel_units"][channel]`` when the collector recorded it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from osgp import loadprofile
from osgp.concentrator.store import Store
from osgp.errors import ConfigurationError

__all__ = ["export", "to_arrow", "KINDS", "FORMATS", "flag_names"]

KINDS = ("intervals", "registers", "events")
FORMATS = ("parquet", "csv", "json")

_FLAGS = (
    (loadprofile.FLAG_DST, "dst"),
    (loadprofile.FLAG_POWER_FAIL, "power fail"),
    (loadprofile.FLAG_CLOCK_FORWARD, "clock forward"),
    (loadprofile.FLAG_CLOCK_BACKWARD, "clock backward"),
)


def flag_names(flags: int) -> str:
    """``"power fail|clock forward"`` for the common flags of an interval ("" for none)."""
    return "|".join(name for bit, name in _FLAGS if flags & bit)


_FLAG_TEXT = np.array([flag_names(i) for i in range(16)], dtype=object)
_STATUS_TEXT = np.array(
    [loadprofile.CHANNEL_STATUS.get(i, f"code {i}") for i in range(16)], dtype=object
)


def _devices(store: Store) -> dict:
    return {d.id: d for d in store.devices()}


def to_arrow(store: Store, kind: str, *, device_ids: Optional[Iterable[int]] = None) -> pa.Table:
    """The readings of one kind (intervals, registers, events) with meter names and
    decoded status, for the given devices (all when None)."""
    if kind not in KINDS:
        raise ConfigurationError(f"export: kind must be one of {KINDS}, not {kind!r}")
    t = getattr(store, kind)()
    if device_ids is not None:
        t = t.filter(pc.is_in(t["device_id"], value_set=pa.array(list(device_ids), pa.int64())))
    devices = _devices(store)
    # per distinct device (and channel), then spread to the rows by index
    ids, at = np.unique(t["device_id"].to_numpy(), return_inverse=True)
    known = [devices.get(i) for i in ids.tolist()]
    neuron = pa.array([d.neuron_id.hex() if d else None for d in known], pa.string())
    serial = pa.array([d.serial if d else None for d in known], pa.string())
    t = t.add_column(1, "neuron_id", neuron.take(at))
    t = t.add_column(2, "serial", serial.take(at))
    if kind == "intervals":
        status = t["status"].to_numpy().astype(np.int64)
        pairs, pair_at = np.unique(
            np.stack([at, t["channel"].to_numpy().astype(np.int64)], axis=1),
            axis=0,
            return_inverse=True,
        )
        units = pa.array([_unit(known[k], ch) for k, ch in pairs.tolist()], pa.string())
        t = t.add_column(
            t.schema.get_field_index("value") + 1, "unit", units.take(pair_at.reshape(-1))
        )
        t = t.append_column("flags", pa.array(_FLAG_TEXT[status & 0xF], pa.string()))
        t = t.append_column(
            "channel_status", pa.array(_STATUS_TEXT[(status >> 4) & 0xF], pa.string())
        )
    elif kind == "events":
        i = t.schema.get_field_index("arg")
        t = t.set_column(i, "arg", pa.array([a.hex() for a in t["arg"].to_pylist()], pa.string()))
    return t


def _unit(device: object, channel: int) -> Optional[str]:
    units = getattr(device, "meta", {}).get("channel_units") or []
    return units[channel] if 0 <= channel < len(units) else None


def _as_text_times(t: pa.Table) -> pa.Table:
    for i, f in enumerate(t.schema):
        if pa.types.is_timestamp(f.type):
            text = pc.strftime(t.column(i), format="%Y-%m-%dT%H:%M:%SZ")
            t = t.set_column(i, f.name, text)
    return t


def _write_json(t: pa.Table, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for k, row in enumerate(t.to_pylist()):
            f.write(("," if k else "") + "\n" + json.dumps(row, ensure_ascii=False))
        f.write("\n]\n")


def export(
    store: Store,
    folder: Union[str, Path],
    formats: Iterable[str] = FORMATS,
    *,
    device_ids: Optional[Iterable[int]] = None,
) -> dict[str, list[Path]]:
    """Write ``<kind>.<format>`` for each kind and format into ``folder``
    (created if needed); returns {kind: [paths, in the order of formats]}."""
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigurationError(f"export: formats are {FORMATS}, not {bad}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ids = None if device_ids is None else list(device_ids)
    written: dict[str, list[Path]] = {}
    for kind in KINDS:
        t = to_arrow(store, kind, device_ids=ids)
        text = _as_text_times(t) if ("csv" in formats or "json" in formats) else t
        paths = []
        for fmt in formats:
            path = out / f"{kind}.{fmt}"
            if fmt == "parquet":
                pq.write_table(t, path)
            elif fmt == "csv":
                pa_csv.write_csv(text, path)
            else:
                _write_json(text, path)
            paths.append(path)
        written[kind] = paths
    return written
