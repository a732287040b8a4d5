"""One profile bundle per link: every choice a session makes on that link.

A :class:`LinkProfile` gathers the link framing profile, the security
envelope, the service size limits (derived from the link's message cap and
the suite's overhead), the transaction tables, the timers, the table set and
the proxy parameters.  Each field carries its status and public source as data
(:attr:`LinkProfile.provenance`); the README's conformance section is checked
against these objects by the test suite.

Statuses: ``VERIFIED`` (reproduces a published example), ``CONFIRMED``
(stated by a public document, no worked example), ``INFERRED`` (a
reconstruction; the standard's text is not public).  Sources are named in
docs/protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Union

from osgp.errors import ConfigurationError
from osgp.link import lon, lon_proxy, mep, optical
from osgp.security import aes_suite
from osgp.security import suite as legacy_suite
from osgp.services import atm
from osgp.services import key_renewal as KR
from osgp.services import transactions as T
from osgp.services.messages import (
    MEP_SERVICES,
    OPTICAL_SERVICES,
    PLC_SERVICES,
    ServiceProfile,
)
from osgp.tables import DEFAULT_SET, TableSet

__all__ = [
    "Provenance",
    "Timers",
    "ProxyParams",
    "LinkProfile",
    "MEP",
    "MEP_AES",
    "OPTICAL",
    "PLC",
    "PLC_AES",
    "BUNDLES",
    "ATM",
    "AtmBundle",
    "bundle",
    "bundle_for",
    "conformance_table",
    "VERIFIED",
    "CONFIRMED",
    "INFERRED",
]

VERIFIED, CONFIRMED, INFERRED = "VERIFIED", "CONFIRMED", "INFERRED"
_STATUSES = (VERIFIED, CONFIRMED, INFERRED)


@dataclass(frozen=True)
class Provenance:
    """Where one choice comes from: ``status`` and the public ``source``."""

    status: str
    source: str

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ConfigurationError(f"status must be one of {_STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class Timers:
    """Session timers of one link, in milliseconds.

    ``response_ms``: how long a client waits for a response before it resends
    the identical frame; ``retries``: resends before the operation fails;
    ``request_gap_ms``: the least time between two requests to one device;
    ``proxy``: what each proxy hop adds (Annex G), see :meth:`response_timeout`.
    """

    response_ms: int
    retries: int
    request_gap_ms: int = 0
    proxy: Optional[ProxyParams] = None

    def response_timeout(self, hops: int = 0) -> float:
        """Seconds to wait for the response to a request sent through ``hops``
        proxy stages (0 = direct)."""
        ms = self.response_ms
        if hops and self.proxy is not None:
            ms += self.proxy.chain_ms(hops)
        return ms / 1000.0


@dataclass(frozen=True)
class ProxyParams:
    """Annex G proxy parameters (LonTalk Enhanced Proxy reconstruction):
    ``tx``: the repeaters' transmit timer code and retry count (ProxyTxCtrl);
    ``long_timer``: the header's long-timer bit; ``max_hops``: the 4-bit
    repeater count plus the agent."""

    tx: lon_proxy.TxCtrl = lon_proxy.TxCtrl(12, 3)  # as osgp.link.carrier sends it
    long_timer: bool = False
    max_hops: int = lon_proxy.MAX_REPEATERS + 1

    def chain_ms(self, hops: int) -> int:
        """What the stages of a chain add to the source's timer: each stage
        waits its own retries plus the per-hop addition for the stages still
        ahead of it (docs/protocol.md §6.3).  A bound: stage i is counted
        with the count it receives, hops-1-i, one more than the count
        lcs_proxy.c adds by, and the stages' waits are summed although
        each stage's wait holds the waits of the stages beyond it."""
        if not 0 <= hops <= self.max_hops:
            raise ConfigurationError(f"a proxy chain has 0..{self.max_hops} hops, got {hops}")
        per_try = lon_proxy.tx_timer_ms(self.tx.timer)
        last_retry = per_try * (self.tx.retries + 1)
        return sum(
            lon_proxy.hop_timeout_ms(last_retry, hops - 1 - i, self.tx.timer, self.long_timer)
            for i in range(hops)
        )


Envelope = Union[legacy_suite.EnvelopeProfile, aes_suite.AesEnvelope]
LinkFraming = Union[mep.MepProfile, optical.OpticalProfile, lon.PlcProfile]


@dataclass(frozen=True)
class LinkProfile:
    """Every choice of one link and suite, with its provenance."""

    name: str
    link: str  # "mep", "optical" or "plc"
    suite: str  # "legacy", "aes" or "none"
    framing: LinkFraming
    envelope: Optional[Envelope]
    services: ServiceProfile
    transactions: T.TransactionTables
    timers: Timers
    tables: TableSet = DEFAULT_SET
    proxy: Optional[ProxyParams] = None
    key_renewal: Optional[KR.KeyRenewalProfile] = None
    provenance: Mapping[str, Provenance] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [
            f for f in _DOCUMENTED if getattr(self, f) is not None and f not in self.provenance
        ]
        if missing:
            raise ConfigurationError(f"{self.name}: no provenance for {', '.join(missing)}")

    def with_tables(self, tables: TableSet) -> LinkProfile:
        """The same bundle with a device's own table set (a firmware dialect)."""
        return replace(self, tables=tables)

    def inferred(self) -> Dict[str, Provenance]:
        return {k: v for k, v in self.provenance.items() if v.status == INFERRED}


_DOCUMENTED = (
    "framing",
    "envelope",
    "services",
    "transactions",
    "timers",
    "tables",
    "proxy",
    "key_renewal",
)
_PROVENANCE_ONLY = ("broadcast", "firmware")  # choices of the link without a profile field


def derived_services(
    name: str, max_message: int, request_overhead: int, response_overhead: int, checksum: bool
) -> ServiceProfile:
    """Data bytes per partial read and write when a link carries at most
    ``max_message`` bytes of secured message: a read response is code 1 +
    count 2 + data (+ checksum 1) + the suite's response overhead; a partial
    write request is code 1 + table 2 + offset 3 + count 2 + data (+ checksum 1)
    + the request overhead (C12.18 service layouts, docs/protocol.md §3.1)."""
    ck = 1 if checksum else 0
    return ServiceProfile(
        name,
        max_message - 3 - ck - response_overhead,
        max_message - 8 - ck - request_overhead,
        checksum,
        f"derived: {max_message}-byte message cap less the suite's overhead",
    )


_MEP_SRC = "OSGP Alliance MEP Client Developer's Guide v1.1"
_OPT_SRC = "ANSI C12.18; OSGP Alliance Optical Port Programmer's Guide v1.1"
_LON_SRC = "ISO/IEC 14908-1; Wireshark packet-lon.c"
_KEY_RENEWAL_SRC = (
    "EP45 (a D.41 manufacturer slot) STAGE then STATUS under the new key; the meter switches "
    "on the first request authentic under the new key; no transfer layout is public "
    f"({_MEP_SRC} p.66 ET04 max key usage, p.137 ET54 usage counts)"
)

_AES_OVERHEAD = 4 + aes_suite.MEP_AES_ENVELOPE.aes.tag_len  # seq:4 + CCM tag, both ways

MEP = LinkProfile(
    name="MEP",
    link="mep",
    suite="legacy",
    framing=mep.PROFILE,
    envelope=legacy_suite.MEP_ENVELOPE,
    services=MEP_SERVICES,
    transactions=T.MEP_TABLES,
    timers=Timers(
        response_ms=mep.PROFILE.response_timeout_ms,
        retries=2,
        request_gap_ms=mep.PROFILE.min_request_interval_ms,
    ),
    provenance={
        "framing": Provenance(VERIFIED, f"{_MEP_SRC} p.8-21, examples p.15-17, 44-53"),
        "envelope": Provenance(VERIFIED, f"{_MEP_SRC} p.9-17, App. A/B; digests p.14-17"),
        "services": Provenance(CONFIRMED, f"{_MEP_SRC} p.8 (476-byte cap), p.43 (456 bytes)"),
        "transactions": Provenance(CONFIRMED, f"{_MEP_SRC} p.43-50 (ET52/ET53)"),
        "timers": Provenance(
            CONFIRMED, f"{_MEP_SRC} p.20-21 (500 ms response, 100 ms between requests)"
        ),
        "tables": Provenance(CONFIRMED, f"{_MEP_SRC} App. B; Optical guide p.15-39"),
        "key_renewal": Provenance(INFERRED, f"MAK sealed by the MEP suite; {_KEY_RENEWAL_SRC}"),
    },
    key_renewal=KR.MEP_LEGACY_RENEWAL,
)

MEP_AES = replace(
    MEP,
    name="MEP-AES",
    suite="aes",
    envelope=aes_suite.MEP_AES_ENVELOPE,
    services=derived_services(
        "MEP-AES", mep.PROFILE.max_message, _AES_OVERHEAD, _AES_OVERHEAD, False
    ),
    provenance={
        **MEP.provenance,
        "envelope": Provenance(
            INFERRED, "OSGP-AES-128-PSK: CCM frame (RFC 3610, EAP-GPSK RFC 5433); layout not public"
        ),
        "services": Provenance(INFERRED, "MEP 476-byte cap less the AES frame overhead"),
        "key_renewal": Provenance(INFERRED, f"key inside the CCM request; {_KEY_RENEWAL_SRC}"),
    },
    key_renewal=KR.AES_RENEWAL,
)

_OPT_FRAMING = optical.NEGOTIATED
OPTICAL = LinkProfile(
    name="optical",
    link="optical",
    suite="none",
    framing=_OPT_FRAMING,
    envelope=None,
    services=OPTICAL_SERVICES,
    transactions=T.MEP_TABLES,
    timers=Timers(response_ms=_OPT_FRAMING.response_timeout_ms, retries=_OPT_FRAMING.retries),
    provenance={
        "framing": Provenance(VERIFIED, f"{_OPT_SRC} p.13-14; CRC-16/X-25 of a published frame"),
        "services": Provenance(CONFIRMED, f"{_OPT_SRC}: read/write layouts with data checksum"),
        "transactions": Provenance(CONFIRMED, f"{_MEP_SRC} p.43-50 (ET52/ET53)"),
        "timers": Provenance(
            CONFIRMED, "ANSI C12.18 response, traffic and inter-character timeouts"
        ),
        "tables": Provenance(CONFIRMED, f"{_OPT_SRC} p.15-39"),
    },
)

_PLC_PROXY = ProxyParams()
_PLC_TIMERS = Timers(
    response_ms=lon_proxy.tx_timer_ms(12),
    retries=3,
    proxy=_PLC_PROXY,
)
_PLC_PROVENANCE = {
    "framing": Provenance(
        INFERRED,
        f"{_LON_SRC}: frames CONFIRMED; OSGP message = the APDU, requests as SPDU REQUEST, "
        "responses as SPDU RESPONSE (OSGP PLC header not public)",
    ),
    "envelope": Provenance(
        INFERRED,
        "MEP trailer (seq:4, digest:8, response digest chained) inside the APDU, PLC RC4 key "
        "derivation from a public reimplementation",
    ),
    "services": Provenance(
        INFERRED, "84-byte read, 75-byte write (OSGP training material); fits a 95-byte APDU"
    ),
    "transactions": Provenance(INFERRED, "ET27/ET28 with the ET52/ET53 layout"),
    "timers": Provenance(
        INFERRED,
        "ISO/IEC 14908-1 transmit timer code 12 (1024 ms) per try, 3 retries; "
        "per-hop additions of the LonTalk Enhanced Proxy (lcs_proxy.c)",
    ),
    "tables": Provenance(CONFIRMED, f"{_OPT_SRC} p.15-39; {_MEP_SRC} App. B"),
    "proxy": Provenance(
        INFERRED, "Annex G repeating as the LonTalk Enhanced Proxy (0x4D/0x4C, lcs_proxy.c)"
    ),
    "key_renewal": Provenance(INFERRED, f"OMAK sealed by the PLC suite; {_KEY_RENEWAL_SRC}"),
    # osgp.security.broadcast, osgp.sim.broadcast (docs/operations-firmware.md)
    "broadcast": Provenance(
        INFERRED,
        "secure group broadcast: an OSGP request sealed under a broadcast key of its own "
        "(ET54 offset 86 counts it apart, MEP p.137) with a seq:4 BE, to a LonTalk group "
        "(unacknowledged or unacknowledged-repeated, ISO/IEC 14908-1); accepted only within "
        "(B, B + D] of ET04 offsets 82/86 (MEP p.61-62), B set to each accepted number",
    ),
    # osgp.services.firmware, osgp.sim.firmware, osgp.concentrator.firmware
    "firmware": Provenance(
        INFERRED,
        "EP08/EP09/EP10 parameter layouts and ET17 (CLC/TS 50586 names; bitmap size ET11 "
        "offset 36, OPT p.41); image length and AES-CMAC image MAC as MEP p.246, else CRC-32",
    ),
}

PLC = LinkProfile(
    name="PLC",
    link="plc",
    suite="legacy",
    framing=lon.PLC_PROFILE,
    envelope=legacy_suite.PLC_ENVELOPE,
    services=PLC_SERVICES,
    transactions=T.PLC_TABLES,
    timers=_PLC_TIMERS,
    proxy=_PLC_PROXY,
    key_renewal=KR.PLC_LEGACY_RENEWAL,
    provenance=_PLC_PROVENANCE,
)

# Under the AES suite the 95-byte APDU loses 4 + tag bytes in both directions:
# reads shrink to 80 data bytes; a write request (8 + 75 + 12) still fits.
PLC_AES = replace(
    PLC,
    name="PLC-AES",
    suite="aes",
    envelope=aes_suite.PLC_AES_ENVELOPE,
    services=ServiceProfile(
        "PLC-AES",
        lon.PLC_PROFILE.max_apdu - 3 - _AES_OVERHEAD,
        75,
        False,
        "INFERRED (PLC limits less the AES overhead)",
    ),
    provenance={
        **_PLC_PROVENANCE,
        "envelope": Provenance(
            INFERRED, "OSGP-AES-128-PSK: CCM frame (RFC 3610, EAP-GPSK RFC 5433) as the APDU"
        ),
        "services": Provenance(INFERRED, "PLC limits less the AES frame overhead"),
        "key_renewal": Provenance(INFERRED, f"key inside the CCM request; {_KEY_RENEWAL_SRC}"),
    },
    key_renewal=KR.AES_RENEWAL,
)

BUNDLES: Dict[str, LinkProfile] = {b.name: b for b in (MEP, MEP_AES, OPTICAL, PLC, PLC_AES)}


@dataclass(frozen=True)
class AtmBundle:
    """Topology discovery and commissioning on power line (osgp.services.atm):
    every choice with its provenance."""

    name: str
    profile: atm.AtmProfile
    provenance: Mapping[str, Provenance]


_ATM_SRC = (
    "design of US 2006/0085346, US 8,700,754, US 9,755,906 (Riley, automated topology "
    "discovery and management for electric meters); no public byte-level format"
)
ATM = AtmBundle(
    name="ATM",
    profile=atm.ATM_PROFILE,
    provenance={
        "discovery": Provenance(
            INFERRED,
            f"{_ATM_SRC}: DISCOVER 0x18 broadcast to a range of CRC-16-hashed Neuron IDs, "
            "answered in random slots (REPLY 0x19: Neuron ID, serial, SSI, margin, hops)",
        ),
        "codes": Provenance(
            INFERRED,
            "free ISO/IEC 14908-1 application-message codes 0x18-0x1C (OSGP's C12.18 codes "
            "and 0x4C/0x4D taken); Update Domain 0x63/0x23/0x03 is ISO/IEC 14908-1 network "
            "management",
        ),
        "proxies": Provenance(
            INFERRED,
            f"{_ATM_SRC}: level-by-level proxies chosen by hop count and both directions' "
            "margins; PROXY_DISCOVER 0x1A and REPORT 0x1B through Annex G chains",
        ),
        "routes": Provenance(
            INFERRED,
            f"{_ATM_SRC}: after the levels, every source (the concentrator, then each proxy "
            "nearest first) sweeps again with all nodes acknowledged but those it never heard "
            "two or more levels out; a link with the least margin both ways shortens the route",
        ),
        "commissioning": Provenance(
            INFERRED,
            "fast commissioning: domain, subnet/node, groups and key in one COMMISSION 0x1C, "
            "sealed and RC4-encrypted by the legacy suite under the factory key",
        ),
    },
)


def bundle(link: str, suite: str = "legacy") -> LinkProfile:
    """The default bundle of a link (``"mep"``, ``"optical"``, ``"plc"``) and
    suite (``"legacy"``, ``"aes"``, ``"none"``)."""
    for b in BUNDLES.values():
        if b.link == link and (b.suite == suite or b.suite == "none"):
            return b
    raise ConfigurationError(f"no profile bundle for link {link!r} with suite {suite!r}")


def bundle_for(carrier: Any, suite: Any) -> LinkProfile:
    """The bundle matching a carrier and a security suite object."""
    kind = (
        "none" if suite is None else "aes" if getattr(suite, "owns_sequence", False) else "legacy"
    )
    return bundle(carrier.link, kind)


def conformance_table() -> str:
    """Markdown table of every bundle's choices with status and source: the
    README's conformance section embeds it (a test keeps the two equal)."""
    rows = ["| bundle | choice | status | source |", "|---|---|---|---|"]
    for b in BUNDLES.values():
        for name in _DOCUMENTED + _PROVENANCE_ONLY:
            p = b.provenance.get(name)
            if p is not None:
                rows.append(f"| {b.name} | {name} | {p.status} | {p.source} |")
    for name, p in ATM.provenance.items():
        rows.append(f"| {ATM.name} | {name} | {p.status} | {p.source} |")
    return "\n".join(rows) + "\n"
