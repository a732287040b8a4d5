"""Security suites: the legacy OMA digest + RC4 suite (``osgp.security.legacy``)
and OSGP-AES-128-PSK (``osgp.security.aes_psk``)."""
