"""The OSGP meter simulator: complete simulated devices on the sans-IO
device session, driven on a virtual clock.

    >>> from osgp.link.carrier import MepDeviceCarrier
    >>> from osgp.security.suite import MEP_ENVELOPE, LegacySuite
    >>> from osgp.sim import SimMeter
    >>> link = (MepDeviceCarrier(), LegacySuite(bytes([1]) * 16, MEP_ENVELOPE))
    >>> m = SimMeter("SIM0000001", links=[link])
    >>> m.advance(3600.0)
    >>> m.registers()["active"] > 0
    True

``osgp.sim.model``: load model and drifting clock; ``osgp.sim.meter``: the
meter and its ports; ``osgp.sim.layouts``: procedure parameter layouts and
event codes (the INFERRED choices); ``osgp.sim.faults``: fault injection;
``osgp.sim.network``: the simulated power-line network the meters share;
``osgp.sim.serve``: meters on pseudo-terminals, sockets and ``osgpsim://``
URLs (importing ``osgp.sim`` registers ``osgpsim://meter?link=optical&seed=7``;
``osgp.transport.handlers.register()`` makes pyserial find the scheme).
"""

from osgp.sim import control as _control  # noqa: F401  (EP02/21/22/36/42, ET05/30/46/61)
from osgp.sim import onetime as _onetime  # noqa: F401  (EP24, ET19/31)
from osgp.sim.faults import Faults
from osgp.sim.meter import DEMAND_INTERVAL, LoadProfileConfig, MeterPort, SimMeter
from osgp.sim.model import LoadModel, MeterClock
from osgp.sim.serve import url_meter
from osgp.transport.handlers import protocol_osgpsim

# osgpsim://meter?link=...&seed=... opens a new simulated meter (osgp.sim.serve.url_meter)
protocol_osgpsim.register_factory("meter", url_meter)

__all__ = [
    "SimMeter",
    "MeterPort",
    "LoadProfileConfig",
    "Faults",
    "LoadModel",
    "MeterClock",
    "DEMAND_INTERVAL",
]
