"""Annex G repeating as LonTalk Enhanced Proxy frames (docs/protocol.md §6.3;
lon-stack-dx lcs_proxy.c/.h, lon-stack-ex proxyint.h).  That OSGP Annex G
*is* LTEP is INFERRED (same vendor; 15 repeaters + the agent = 16 hops).

APDU 0x4D (proxy command / success response), 0x4C (failure + the proxy
count at the failing stage)::

    4D  header:1  b3..0 count, b4 uniform_by_src, b5 all_agents, b6 long_timer, b7 uniform_by_dest
        repeaters: count x {subnet:1, b7 path | b6..0 node}   (uniform: {b7 path | node} only)
        txctrl:1   b3..0 timer code, b7..4 retries            (only when count > 0)
        sicb:2     b1..0 mode, b3..2 service, b4 path, b7..5 target type; byte 1 = agent txctrl
        [altkey]   mode 2: b1..0 type (0: 6 bytes, 1: OMA 12 bytes) + key delta
        target     by type: 0 {group,size} 1 {subnet,node} 2 {subnet,NID:6} 3 {subnet,backlog}
                   4 {group} 5 {node} 6 {NID:6} 7 {node}
        apdu       code + data (<= 102 bytes, MAX_PROXY_DATA)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, Tuple

from osgp.errors import ConfigurationError
from osgp.link._cursor import Cursor

__all__ = [
    "PROXY",
    "PROXY_FAIL",
    "MAX_REPEATERS",
    "MAX_PROXY_DATA",
    "TARGET_LEN",
    "Repeater",
    "TxCtrl",
    "Sicb",
    "ProxyTarget",
    "ProxyRequest",
    "ProxyFailure",
    "encode_proxy",
    "decode_proxy",
    "encode_failure",
    "decode_proxy_response",
    "relay",
    "hop_timeout_ms",
    "tx_timer_ms",
    "MODE_NORMAL",
    "MODE_ZERO_SYNC",
    "MODE_ALT_KEY",
    "MODE_ATTENUATE",
]

PROXY = 0x4D
PROXY_FAIL = 0x4C
MAX_REPEATERS = 15  # 4-bit count (docs/protocol.md §6.3)
MAX_PROXY_DATA = 102
MODE_NORMAL, MODE_ZERO_SYNC, MODE_ALT_KEY, MODE_ATTENUATE = 0, 1, 2, 3
# Target address bytes by SICB target type, as the module docstring lays them out
# (lcs_proxy.h; docs/protocol.md §6.3); also sizes the Wireshark dissector's targets.
TARGET_LEN = {0: 2, 1: 2, 2: 7, 3: 2, 4: 1, 5: 1, 6: 6, 7: 1}
LAYER = "lon.proxy"


@dataclass(frozen=True)
class Repeater:
    node: int
    subnet: Optional[int] = None  # None in uniform (compact) lists
    alt_path: bool = False


@dataclass(frozen=True)
class TxCtrl:
    timer: int = 0  # 4-bit transmit timer code
    retries: int = 0

    def encode(self) -> int:
        if not (0 <= self.timer < 16 and 0 <= self.retries < 16):
            raise ConfigurationError("txctrl timer and retries are 4-bit")
        return (self.retries << 4) | self.timer

    @classmethod
    def decode(cls, b: int) -> TxCtrl:
        return cls(b & 0x0F, b >> 4)


@dataclass(frozen=True)
class Sicb:
    """Service information control block for the agent -> target leg."""

    target_type: int
    service: int = 3  # 0 ACKD, 1 UNACKD_RPT, 2 UNACKD, 3 REQUEST
    mode: int = MODE_NORMAL
    alt_path: bool = False
    txctrl: TxCtrl = TxCtrl()


@dataclass(frozen=True)
class ProxyTarget:
    """``fields`` are the raw target-address bytes for the type (see module doc)."""

    type: int
    fields: bytes


@dataclass(frozen=True)
class ProxyRequest:
    repeaters: Tuple[Repeater, ...]
    sicb: Sicb
    target: ProxyTarget
    apdu: bytes
    txctrl: TxCtrl = TxCtrl()
    uniform_by_src: bool = False
    uniform_by_dest: bool = False
    all_agents: bool = False
    long_timer: bool = False
    alt_key_type: int = 0
    alt_key: bytes = b""

    @property
    def uniform(self) -> bool:
        return self.uniform_by_src or self.uniform_by_dest


@dataclass(frozen=True)
class ProxyFailure:
    count: int  # proxy count at the failing stage


def encode_proxy(p: ProxyRequest) -> bytes:
    n = len(p.repeaters)
    if n > MAX_REPEATERS:
        raise ConfigurationError(f"at most {MAX_REPEATERS} repeaters, got {n}")
    if len(p.apdu) < 1 or len(p.apdu) > MAX_PROXY_DATA:
        raise ConfigurationError(f"target APDU must be 1..{MAX_PROXY_DATA} bytes")
    if p.target.type not in TARGET_LEN or len(p.target.fields) != TARGET_LEN[p.target.type]:
        raise ConfigurationError("target address does not match its type")
    h = (
        n
        | (0x10 if p.uniform_by_src else 0)
        | (0x20 if p.all_agents else 0)
        | (0x40 if p.long_timer else 0)
        | (0x80 if p.uniform_by_dest else 0)
    )
    out = bytearray([PROXY, h])
    for r in p.repeaters:
        if not 0 <= r.node < 128:
            raise ConfigurationError("repeater node is 7-bit")
        if not p.uniform:
            if r.subnet is None or not 0 <= r.subnet < 256:
                raise ConfigurationError("non-uniform repeater lists need a subnet per entry")
            out.append(r.subnet)
        out.append((0x80 if r.alt_path else 0) | r.node)
    if n:
        out.append(p.txctrl.encode())
    s = p.sicb
    if not (0 <= s.mode < 4 and 0 <= s.service < 4 and s.target_type == p.target.type):
        raise ConfigurationError("bad SICB")
    out += bytes(
        [
            s.mode | (s.service << 2) | (0x10 if s.alt_path else 0) | (s.target_type << 5),
            s.txctrl.encode(),
        ]
    )
    if s.mode == MODE_ALT_KEY:
        klen = 6 if p.alt_key_type == 0 else 12
        if p.alt_key_type not in (0, 1) or len(p.alt_key) != klen:
            raise ConfigurationError("alternate key: type 0 with 6 bytes or type 1 with 12")
        out.append(p.alt_key_type)
        out += p.alt_key
    out += p.target.fields
    out += p.apdu
    return bytes(out)


def decode_proxy(data: Any, *, base: int = 0) -> ProxyRequest:
    c = Cursor(data, LAYER, base=base)
    if c.u8() != PROXY:
        raise c.malformed("not a proxy command (0x4D)", 1)
    h = c.u8()
    n = h & 0x0F
    ubs, aa, lt, ubd = bool(h & 0x10), bool(h & 0x20), bool(h & 0x40), bool(h & 0x80)
    reps = []
    for _ in range(n):
        sub = None if (ubs or ubd) else c.u8()
        b = c.u8()
        reps.append(Repeater(b & 0x7F, sub, bool(b & 0x80)))
    tx = TxCtrl.decode(c.u8()) if n else TxCtrl()
    s0, s1 = c.u8(), c.u8()
    sicb = Sicb(s0 >> 5, (s0 >> 2) & 3, s0 & 3, bool(s0 & 0x10), TxCtrl.decode(s1))
    kt, key = 0, b""
    if sicb.mode == MODE_ALT_KEY:
        kt = c.u8()
        if kt & 0xFC or kt > 1:
            raise c.malformed(f"alternate key type {kt} undefined", 1)
        key = c.take(6 if kt == 0 else 12)
    target = ProxyTarget(sicb.target_type, c.take(TARGET_LEN[sicb.target_type]))
    apdu = c.rest()
    if not apdu:
        raise c.malformed("proxy frame has no target APDU")
    if len(apdu) > MAX_PROXY_DATA:
        raise c.malformed(f"target APDU longer than {MAX_PROXY_DATA} bytes", len(apdu))
    return ProxyRequest(tuple(reps), sicb, target, apdu, tx, ubs, ubd, aa, lt, kt, key)


def encode_failure(count: int) -> bytes:
    return bytes([PROXY_FAIL, count & 0x0F])


def decode_proxy_response(data: Any) -> Any:
    """0x4D + target response (INFERRED: the agent relays the target's APDU
    back after the success code) -> bytes; 0x4C + count -> ProxyFailure."""
    c = Cursor(data, LAYER + ".response")
    code = c.u8()
    if code == PROXY:
        return c.rest()
    if code == PROXY_FAIL:
        f = ProxyFailure(c.u8())
        c.done()
        return f
    raise c.malformed(f"proxy response code 0x{code:02X}", 1)


def relay(p: ProxyRequest, own_subnet: int, src_subnet: int) -> Tuple[Any, Optional[ProxyRequest]]:
    """One repeater step (lcs_proxy.c): take the first address, decrement the
    count, forward the rest.  Returns ((subnet, node, alt_path), forwarded) for
    a repeater, or (target, None) when ``p`` has count 0 (this node is the agent).
    A uniform list's subnet is the source subnet (uniform_by_src) or the relay's
    own subnet (uniform_by_dest)."""
    if not p.repeaters:
        return p.target, None
    first, rest = p.repeaters[0], p.repeaters[1:]
    subnet = first.subnet
    if subnet is None:
        subnet = src_subnet if p.uniform_by_src else own_subnet
    return (subnet, first.node, first.alt_path), replace(p, repeaters=rest)


def tx_timer_ms(code: int) -> int:
    """ISO/IEC 14908-1 transmit timer: 16 * 2**(code/2) ms, +50 % for odd codes
    (docs/protocol.md §6.1: 16, 24, 32, 48, ... 3072)."""
    if not 0 <= code < 16:
        raise ConfigurationError("timer code is 4-bit")
    t = 16 << (code // 2)
    return t + t // 2 if code & 1 else t


def hop_timeout_ms(last_retry_ms: int, count: int, timer_code: int, long_timer: bool) -> int:
    """Per-hop timer of a proxy chain (docs/protocol.md §6.3, lcs_proxy.c): the last
    retry timer plus 512 ms x remaining count when long_timer or timer code >= 10,
    256 ms x count when the code is >= 8, else 256 ms."""
    if long_timer or timer_code >= 10:
        return last_retry_ms + 512 * count
    if timer_code >= 8:
        return last_retry_ms + 256 * count
    return last_retry_ms + 256
