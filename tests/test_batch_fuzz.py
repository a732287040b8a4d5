"""The columnar pipeline on damaged frames (fixed seed): bytes of a
simulated feeder's LPDUs flipped, cut and repeated; every frame still ends
in exactly one fate and nothing but the report hears about it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from osgp.batch import Frames, StaticKeys, read_frames
from osgp.batch.pipeline import FATES, Report, decode_images, frame_images

from .batch_feeder import build


@pytest.fixture(scope="module")
def frames():
    f = build(2, seed=3)
    fr, _ = read_frames(f.capture)
    keys = StaticKeys({f"{s}/{n}": k for (s, n), k in f.keys.items()})
    return [fr.frame(i) for i in range(len(fr))], fr.ts_ns, keys


def _pack(parts, ts):
    bounds = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=bounds[1:])
    data = np.frombuffer(b"".join(parts) + b"\0", dtype=np.uint8)
    return Frames(data, bounds, np.asarray(ts, dtype=np.int64), np.arange(len(parts)))


def test_damaged_frames_give_fates_and_rejections_never_exceptions(frames):
    parts, ts, keys = frames
    rng = random.Random(2026)
    for _ in range(40):
        damaged = list(parts)
        for _ in range(rng.randrange(1, 60)):
            i = rng.randrange(len(damaged))
            b = bytearray(damaged[i])
            op = rng.randrange(4)
            if op == 0 and b:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            elif op == 1:
                del b[rng.randrange(len(b) + 1) :]
            elif op == 2:
                b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
            else:
                j = rng.randrange(len(damaged))  # a frame replaced by another (replays)
                b = bytearray(damaged[j])
            damaged[i] = bytes(b)
        report = Report()
        images = frame_images(_pack(damaged, ts), keys, report)
        decode_images(images, report)
        assert sum(report.frames[f] for f in FATES) == len(damaged)
        assert report.verified <= report.exchanges
