"""Write the seed corpora of the C harnesses (fuzz/c/fuzz_*.c) into OUTDIR/<harness>/.

Seeds are the published frames and table images of tests/vectors/*.json
wrapped in each harness's input layout (see the comment at the top of each
harness), every built-in table layout over generic images, load-profile
archives built from the documented block layout, plus any input committed
in fuzz/c/seeds/<harness>/ (inputs that once failed a harness).  Run at
build/run time (fuzz/c/run.sh); nothing generated here is committed.

    python fuzz/c/make_seeds.py OUTDIR
"""

from __future__ import annotations

import binascii
import json
import re
import shutil
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTORS = HERE.parent.parent / "tests" / "vectors"


def _load(name: str) -> dict:
    with open(VECTORS / name, encoding="utf-8") as fh:
        return json.load(fh)


def _hex(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def lon_crc(data: bytes) -> bytes:
    # ISO/IEC 14908-1 link CRC: CRC-16 poly 0x1021 MSB first, init 0xFFFF,
    # complemented, appended big-endian (binascii.crc_hqx is that CRC uncomplemented)
    return struct.pack(">H", binascii.crc_hqx(data, 0xFFFF) ^ 0xFFFF)


def lon_seeds() -> list[bytes]:
    d = _load("lon_frames.json")
    npdus = [_hex(x["hex"]) for x in d["npdu"]]
    out = []
    for n in npdus:
        out.append(b"\x00" + n)  # bare NPDU
        lpdu = b"\x00" + n  # LPDU header byte (priority 0, backlog 0), then the NPDU
        out.append(b"\x01" + lpdu)
        out.append(b"\x03" + lpdu + lon_crc(lpdu))
    return out


def mep_exchanges() -> list[tuple[bytes, bytes]]:
    pairs = []
    for e in _load("mep_frames.json")["exchanges"]:
        pairs.append((_hex(e["request"]), _hex(e["response"])))
    for e in _load("mep_guide_frames.json")["exchanges"]:
        pairs.append((_hex(e["request_frame"]), _hex(e["response_frame"])))
    return pairs


def _framed(f: bytes) -> bytes:
    # the request harness's frame record: length byte (255: u16 LE follows)
    return (bytes([len(f)]) if len(f) < 255 else b"\xff" + struct.pack("<H", len(f))) + f


def mep_request_seeds() -> list[bytes]:
    reqs = [r for r, _ in mep_exchanges()]
    out = [b"\x00" + _framed(r) for r in reqs]
    out.append(b"\x00" + b"".join(_framed(r) for r in reqs))  # batch of all
    out.append(b"\x10" + b"".join(_framed(r) for r in reqs * 10))  # > 64: two chunks
    out.append(b"\x14" + _framed(reqs[0]))  # 12-byte key, fixed up
    return out


def mep_response_seeds() -> list[bytes]:
    out = []
    for req, resp in mep_exchanges():
        out.append(b"\x00" + struct.pack("<H", len(req)) + req + resp)
    return out


def mep_split_seeds() -> list[bytes]:
    frames = [f for pair in mep_exchanges() for f in pair]
    stream = b"".join(frames)
    return [
        b"\x40" + struct.pack("<H", 2048) + stream,
        b"\x03" + struct.pack("<H", 2048) + stream,
        b"\x40" + struct.pack("<H", 16) + stream,
        b"\x40" + struct.pack("<H", 2048) + stream[:-3],
    ]


def _programs() -> list[tuple[str, int]]:
    # (name, parameter count) of each program, in fuzz_table_run's selector order
    text = (HERE / "table_programs.h").read_text(encoding="utf-8")
    return [(m[0], int(m[1])) for m in re.findall(r'\{"(\w+)", prog_\w+, \d+, (\d+), \d+\}', text)]


def _program_words(name: str) -> tuple[list[int], int]:
    text = (HERE / "table_programs.h").read_text(encoding="utf-8")
    body = re.search(rf"prog_{name.lower()}\[\d+\] = \{{(.*?)\}};", text, re.S)
    nregs = re.search(rf'\{{"{name}", prog_\w+, \d+, \d+, (\d+)\}}', text)
    assert body and nregs
    return [int(w.rstrip("u"), 16) for w in re.findall(r"0x[0-9a-f]+u", body[1])], int(nregs[1])


def table_seeds() -> list[bytes]:
    progs = _programs()
    index = {name: i for i, (name, _) in enumerate(progs)}
    t = _load("tables.json")
    out = []
    # published images with their context: BT52 (TM_FORMAT 2), BT61 (NES defaults, one set)
    out.append(bytes([index["BT52"], t["bt52_clock"]["tm_format"]]) + _hex(t["bt52_clock"]["hex"]))
    out.append(bytes([index["BT61"], 1]) + _hex(t["bt61_nes_defaults"]["hex"]))
    # the same layouts as input programs (selector 0xC0: register count, word count, words)
    for name, image in (("BT52", _hex(t["bt52_clock"]["hex"])), ("BT61", b"\x01" * 16)):
        words, nregs = _program_words(name)
        params = bytes([t["bt52_clock"]["tm_format"]] * nregs)
        out.append(
            bytes([0xC0, nregs, len(words)])
            + struct.pack(f"<{len(words)}I", *words)
            + params
            + image
        )
    # every layout over a few generic images, parameters 1 or 2 (TM_FORMAT 2, small counts)
    for i, (_, nparams) in enumerate(progs):
        for pv in (1, 2):
            out.append(bytes([i]) + bytes([pv]) * nparams + bytes(range(64)))
        out.append(bytes([i]) + b"\x02" * nparams + b"\x00" * 32)
    return out


def _stime(y: int, mo: int, d: int, h: int, mi: int) -> bytes:
    # STIME_DATE, TM_FORMAT 2: binary YY MM DD hh mm (reference 3.4, 7.1)
    return bytes([y - 2000, mo, d, h, mi])


def lp_seed(nch: int, nint: int, fmt: int, width: int, nblocks: int, flags: int = 0) -> bytes:
    # geometry as osgp.loadprofile computes it from BT61/BT62 ([OPT p.36]):
    # STIME_DATE | SIMPLE_INT_STATUS | nint x {EXTENDED_INT_STATUS | INT_DATA}
    tw, ext = 5, nch // 2 + 1
    simple_off, int0 = tw, tw + (nint + 7) // 8
    int_size = ext + nch * width
    block = int0 + nint * int_size
    geo = struct.pack(
        "<HHBBBHHHBBBBiBB",
        block,
        nint,
        nch,
        0,
        2,
        simple_off,
        int0,
        int_size,
        0,
        ext,
        fmt,
        8,
        900,
        flags,
        nblocks,
    )
    geo += bytes(range(nblocks))
    if flags & 2:
        geo += struct.pack(f"<{nblocks}H", *([nint - 1] * (nblocks - 1) + [nint // 2]))
    img = b""
    for b in range(nblocks):
        blk = _stime(2024, 1, 2 + b, 3, 15) + b"\xff" * ((nint + 7) // 8)
        for j in range(nint):
            blk += bytes([(j * 17 + c) & 0xFF for c in range(ext)])
            vals = ((1000 * b + 10 * j + c) % (1 << (8 * width)) for c in range(nch))
            blk += b"".join(v.to_bytes(width, "little") for v in vals)
        img += blk
    return geo + img


def lp_seeds() -> list[bytes]:
    base = [
        ((2, 4, 32, 4, 2), 0),
        ((4, 8, 32, 4, 3), 2),
        ((8, 8, 4, 4, 2), 0),
        ((1, 12, 16, 2, 2), 1),
        ((3, 8, 1, 1, 2), 3),
        ((2, 4, 64, 4, 1), 0),  # NI_FMAT1 with NI_FORMAT 8 (INT32)
        ((10, 4, 32, 4, 2), 0),
    ]
    # each with every alternate form (flags bits 2-3, fuzz_lp_decode.c)
    return [lp_seed(*g, flags=f | form << 2) for g, f in base for form in range(4)]


def _ccm_seed(key: bytes, nonce: bytes, aad: bytes, data: bytes, tag_len: int, seal: bool) -> bytes:
    sel = (len(nonce) - 6) | ((tag_len - 2) // 2) << 3 | (0x40 if seal else 0)
    alen = bytes([len(aad)]) if len(aad) < 255 else b"\xff" + struct.pack("<H", len(aad))
    return bytes([sel]) + key + alen + aad + nonce + data


def ccm_seeds() -> list[bytes]:
    out = []
    for v in _load("rfc3610_ccm.json")["vectors"]:
        key, nonce, aad = _hex(v["key"]), _hex(v["nonce"]), _hex(v["aad"])
        out.append(_ccm_seed(key, nonce, aad, _hex(v["sealed"]), v["tag_len"], False))
        out.append(_ccm_seed(key, nonce, aad, _hex(v["plaintext"]), v["tag_len"], True))
    for g in _load("wycheproof_aes_ccm_128.json")["testGroups"]:
        for t in g["tests"][:4]:
            nonce, tag = _hex(t["iv"]), _hex(t["tag"])
            if 7 <= len(nonce) <= 13 and 4 <= len(tag) <= 16:
                sealed = _hex(t["ct"]) + tag
                out.append(
                    _ccm_seed(_hex(t["key"]), nonce, _hex(t["aad"]), sealed, len(tag), False)
                )
    # each also with the batch form as the alternate (selector bit 7, fuzz_ccm_open.c)
    return out + [bytes([s[0] | 0x80]) + s[1:] for s in out]


def capture_seeds() -> list[bytes]:
    """pcapng (both byte orders, nanosecond and binary resolutions, an SPB and
    an unknown block) and classic pcap (both orders) captures of one CN/IP
    frame, each in strict (mode 1) and lenient (mode 0) form."""
    cnip = struct.pack(">HBBBBHIII", 24, 1, 1, 0, 0, 0, 0, 0, 0) + b"\x01\x16\x01\x02"
    udp = struct.pack(">HHHH", 1628, 1628, 8 + len(cnip), 0) + cnip
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, b"\xc0\0\2\1", b"\xc0\0\2\2"
    )
    frame = b"\xff" * 6 + b"\x02" + b"\x00" * 5 + b"\x08\x00" + ip + udp

    def block(e: str, kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(e + "II", kind, n) + body + struct.pack(e + "I", n)

    out = []
    for e, resol in (("<", 9), (">", 0x80 | 20)):
        f = block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
        f += block(e, 1, struct.pack(e + "HHIHHB3xHH", 1, 0, 0, 9, 1, resol, 0, 0))
        f += block(e, 6, struct.pack(e + "IIIII", 0, 1, 2, len(frame), len(frame)) + frame)
        f += block(e, 3, struct.pack(e + "I", len(frame)) + frame)
        f += block(e, 0x1234, b"abcd")
        out += [b"\x01" + f, b"\x00" + f]
    for e, magic in (("<", 0xA1B2C3D4), (">", 0xA1B23C4D)):
        f = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        f += struct.pack(e + "IIII", 1, 2, len(frame), len(frame)) + frame
        out += [b"\x01" + f, b"\x00" + f]
    return out


HARNESSES = {
    "fuzz_ccm_open": ccm_seeds,
    "fuzz_table_run": table_seeds,
    "fuzz_lp_decode": lp_seeds,
    "fuzz_lon_parse": lon_seeds,
    "fuzz_mep_request": mep_request_seeds,
    "fuzz_mep_response": mep_response_seeds,
    "fuzz_mep_split": mep_split_seeds,
    "fuzz_capture_walk": capture_seeds,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    for name, make in HARNESSES.items():
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(make()):
            (d / f"vector-{i:03d}").write_bytes(seed)
        committed = HERE / "seeds" / name
        if committed.is_dir():
            for f in sorted(committed.iterdir()):
                shutil.copy(f, d / f.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
