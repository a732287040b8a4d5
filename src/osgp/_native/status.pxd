# The one mapping from a kernel status (csrc/osgp.h osgp_status) to the
# osgp.errors class it raises.  Every .pyx turns a status into an exception
# through status_class; the messages (and the layer / offset of decode
# errors) are the caller's.  Error path only: the import costs nothing on a
# call that succeeds.
from osgp._native.osgp_c cimport *


cdef inline object status_class(osgp_status st):
    from osgp import errors
    if st == OSGP_ERR_AUTH:
        return errors.AuthenticationError
    if st == OSGP_ERR_TRUNCATED:
        return errors.TruncatedError
    if st == OSGP_ERR_MALFORMED:
        return errors.MalformedError
    if st == OSGP_ERR_CHECKSUM:
        return errors.ChecksumError
    if st == OSGP_ERR_NOMEM:
        return MemoryError
    # KEY_LENGTH, ARGUMENT, NONCE_LENGTH, TAG_LENGTH, DATA_LENGTH, CAPACITY,
    # PROGRAM and any value a newer kernel adds: the caller's arguments
    return errors.ConfigurationError
