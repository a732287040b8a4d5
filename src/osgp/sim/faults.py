"""Fault injection for one simulated meter: a small declarative config and the
deterministic dice that apply it.

    Faults.from_dict({"seed": 7, "drop": 0.1, "busy": 0.05, "slow_polls": 2,
                      "clock_jumps": [[3600, 120]]})

Probabilities are per frame (``drop``, ``busy``: per request the meter hears;
``corrupt``, ``duplicate``, ``delay``, ``wrong_digest``: per response it
sends).  Each port of a meter throws its own dice, seeded from the config's
seed, the meter's seed and the port's index, so a run repeats exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any, Mapping, Tuple

from osgp.errors import ConfigurationError
from osgp.sim.model import splitmix64

__all__ = ["Faults", "Dice"]


@dataclass(frozen=True)
class Faults:
    """What can go wrong with one meter.

    * ``drop``: a request is lost before the meter hears it;
    * ``busy``: a request is answered 0x06 (device busy) and not served;
    * ``corrupt``: one byte of a response frame is flipped (the link check,
      CRC or digest, then fails at the client);
    * ``duplicate``: a response is sent twice;
    * ``delay`` / ``delay_s``: a response is held back ``delay_s`` seconds;
    * ``wrong_digest``: a response is sealed with its last trailer byte
      flipped (the frame is well formed, its digest or tag does not verify);
    * ``slow_polls``: every procedure answers "accepted" (result 1) this many
      more BT08 reads before its result;
    * ``clock_jumps``: ``(virtual time, seconds)`` pairs: the meter clock jumps
      by that much at that time (BT03 CLOCK_ERROR is set until the clock is set).
    """

    seed: int = 0
    drop: float = 0.0
    busy: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    delay_s: float = 1.0
    wrong_digest: float = 0.0
    slow_polls: int = 0
    clock_jumps: Tuple[Tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("drop", "busy", "corrupt", "duplicate", "delay", "wrong_digest"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigurationError(f"fault {name}: probability {p} outside 0..1")
        if self.slow_polls < 0 or self.delay_s < 0:
            raise ConfigurationError("faults: slow_polls and delay_s must not be negative")
        object.__setattr__(
            self, "clock_jumps", tuple(sorted((float(t), float(s)) for t, s in self.clock_jumps))
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigurationError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        return cls(**dict(d))

    @property
    def frames(self) -> bool:
        """Whether any per-frame fault is configured."""
        return any(
            (self.drop, self.busy, self.corrupt, self.duplicate, self.delay, self.wrong_digest)
        )


class Dice:
    """The deterministic random stream of one port."""

    __slots__ = ("faults", "_rng")

    def __init__(self, faults: Faults, meter_seed: int, port: int) -> None:
        self.faults = faults
        self._rng = random.Random(splitmix64((faults.seed << 16) ^ meter_seed ^ port))

    def roll(self, p: float) -> bool:
        return p > 0.0 and self._rng.random() < p

    def index(self, n: int) -> int:
        return self._rng.randrange(n)
