"""The device side, simulated: OSGP meters and the power-line network they
share (:mod:`osgp.sim.network`), on a virtual clock."""
