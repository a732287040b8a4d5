"""Compiled kernels (Cython over csrc/).  Import through osgp._backend, not directly."""
