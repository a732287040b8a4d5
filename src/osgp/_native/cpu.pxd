# CPU-feature names and the test switch shared by every kernel family
# (csrc/osgp_cpu.c).  Each extension links its own copy of osgp_cpu.c, so each
# module exposes its own cpu_features() / set_cpu_features() over these.
from osgp._native.osgp_c cimport (OSGP_CPU_AESNI, OSGP_CPU_ARM_AES, OSGP_CPU_AVX2,
                                  OSGP_CPU_NEON, OSGP_CPU_PCLMUL, OSGP_CPU_SSE2,
                                  OSGP_CPU_SSE41, OSGP_CPU_SSSE3, OSGP_CPU_VAES,
                                  osgp_cpu_features,
                                  osgp_cpu_set_mask)


cdef inline dict cpu_name_bits():
    return {
        "sse2": OSGP_CPU_SSE2, "ssse3": OSGP_CPU_SSSE3, "sse41": OSGP_CPU_SSE41,
        "avx2": OSGP_CPU_AVX2, "aesni": OSGP_CPU_AESNI, "pclmul": OSGP_CPU_PCLMUL,
        "neon": OSGP_CPU_NEON, "armaes": OSGP_CPU_ARM_AES, "vaes": OSGP_CPU_VAES,
    }


cdef inline object features_in_use():
    """Names of the features the kernels may use now."""
    cdef unsigned f = osgp_cpu_features()
    names = []
    for name, bit in cpu_name_bits().items():
        if f & <unsigned>bit:
            names.append(name)
    return frozenset(names)


cdef inline int limit_features(object names) except -1:
    """Limit the kernels to ``names`` (None: everything detected)."""
    cdef unsigned mask = 0
    bits = cpu_name_bits()
    if names is None:
        mask = ~0u
    else:
        for name in names:
            if name not in bits:
                from osgp.errors import ConfigurationError
                raise ConfigurationError(f"unknown CPU feature {name!r}")
            mask |= <unsigned>bits[name]
    osgp_cpu_set_mask(mask)
    return 0
