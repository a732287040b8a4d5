"""Pure-Python twins of the native kernels (docs/conventions.md §4): same names, same
signatures, same errors.  Slow, simple, and the executable specification the
native code is tested against."""
