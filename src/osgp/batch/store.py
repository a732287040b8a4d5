"""The concentrator's store as a batch input: ``osgp decode store:URL[#segment]``
reads the raw frames a collection kept (``run_collection(keep_frames=True)``
fills the store's ``frames`` table: segment, ts_ns, direction, frame, the
LonTalk LPDU without CRC).  The table is read with SQLAlchemy by its
documented columns, so the batch decoder does not depend on the concentrator
package; keys still come from a key file (the store's keys are sealed by its
vault)."""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
import sqlalchemy as sa

from osgp.batch.archive import Frames
from osgp.errors import ConfigurationError

__all__ = ["PREFIX", "is_store", "store_frames"]

PREFIX = "store:"


def is_store(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def store_frames(spec: str) -> Tuple[Frames, Dict[str, Any]]:
    """The kept frames of ``store:URL[#segment]`` in time order, packed as a
    capture's."""
    url, _, segment = spec[len(PREFIX) :].partition("#")
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigurationError(f"store URL {url!r}: {exc}") from None
    frames = sa.table(
        "frames", sa.column("id"), sa.column("segment"), sa.column("ts_ns"), sa.column("frame")
    )
    q = sa.select(frames.c.ts_ns, frames.c.frame).order_by(frames.c.ts_ns, frames.c.id)
    if segment:
        q = q.where(frames.c.segment == segment)
    try:
        with engine.connect() as conn:
            rows = [(int(t), bytes(f)) for t, f in conn.execute(q)]
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigurationError(
            f"store {url!r}: no raw frames to read ({exc.__class__.__name__})"
        ) from None
    finally:
        engine.dispose()
    bounds = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(f) for _, f in rows], out=bounds[1:])
    data = np.frombuffer(b"".join(f for _, f in rows) + b"\0", dtype=np.uint8)
    ts = np.array([t for t, _ in rows], dtype=np.int64)
    info = {"frames": len(rows), "bytes": int(bounds[-1]), "segment": segment or None}
    return Frames(data, bounds, ts, np.arange(len(rows), dtype=np.int64)), info
