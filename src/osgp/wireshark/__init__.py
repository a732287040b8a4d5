"""A Wireshark dissector for OSGP, shipped with osgp (an application: nothing
in the library imports it).

``osgp_dissector.lua`` is a Lua plugin for Wireshark's own plugin API.  Its
constants (request and response codes, table and procedure names, the PLC and
MEP envelope choices with their status) are written by
:mod:`osgp.wireshark.generate` from osgp's own tables, and the suite checks
the shipped file against a fresh generation.  ``osgp wireshark --install``
copies it into the personal Lua plugin folder; ``--print`` writes it to stdout
(:mod:`osgp.wireshark.cli`).  See docs/wireshark.md.
"""
