"""Links: the byte framing of each way to reach an OSGP device.

* :mod:`osgp.link.mep` - MEP serial port (OSGP Alliance MEP guide; CONFIRMED).
* :mod:`osgp.link.optical` - optical port, ANSI C12.18 PSEM (CONFIRMED).
* :mod:`osgp.link.lon` - power line, ISO/IEC 14908-1 LPDU/NPDU/TPDU/SPDU/
  AuthPDU/APDU, CN/IP tunnelling, and the OSGP envelope inside the APDU
  (PLC wire profile: INFERRED); :mod:`osgp.link.lon_proxy` - Annex G
  repeating (proxy frames; INFERRED to be LonTalk Enhanced Proxy).

Every envelope choice sits in one profile object per link
(``mep.PROFILE``, ``optical.PROFILE``, ``lon.PLC_PROFILE``).
"""
