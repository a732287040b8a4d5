"""Batch decoding of capture archives to Parquet (application layer).

``osgp decode CAPTURE... --keys FILE --out DIR`` on the command line;
:func:`decode_captures` from Python.  The stages are in
:mod:`osgp.batch.pipeline`, reading in :mod:`osgp.batch.archive`, keys in
:mod:`osgp.batch.keys`, output and parallel runs in :mod:`osgp.batch.run`
(docs/batch.md).
"""

from osgp.batch.archive import Frames, open_capture, read_frames
from osgp.batch.keys import Device, KeyFile, KeyLookup, StaticKeys
from osgp.batch.pipeline import FATES, REASONS, Report, decode_frames
from osgp.batch.run import DATASETS, decode_captures, decode_file, schemas, to_arrow

__all__ = [
    "DATASETS",
    "FATES",
    "REASONS",
    "Device",
    "Frames",
    "KeyFile",
    "KeyLookup",
    "Report",
    "StaticKeys",
    "decode_captures",
    "decode_file",
    "decode_frames",
    "open_capture",
    "read_frames",
    "schemas",
    "to_arrow",
]
