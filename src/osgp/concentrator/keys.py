"""Per-device keys at rest: AES-GCM under one master key.

A sealed key is ``01 || nonce(12) || ciphertext || tag(16)``: a random 96-bit
nonce per seal (NIST SP 800-38D §8.2.2), the additional data binding the row
(device id and purpose), so a ciphertext copied to another row does not open.
Neither the vault nor the store ever logs or prints a key.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Optional, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from osgp.errors import AuthenticationError, ConfigurationError

__all__ = ["KeyVault", "parse_key", "parse_password"]

_VERSION = b"\x01"
_NONCE = 12  # 96-bit GCM nonce (SP 800-38D §5.2.1.1)


def _aad(device_id: int, purpose: str) -> bytes:
    return device_id.to_bytes(8, "big", signed=True) + purpose.encode("utf-8")


class KeyVault:
    """Seals and opens device keys under a 16- or 32-byte master key."""

    __slots__ = ("_aead",)

    def __init__(self, master_key: bytes) -> None:
        if not isinstance(master_key, (bytes, bytearray)) or len(master_key) not in (16, 32):
            n = len(master_key) if isinstance(master_key, (bytes, bytearray)) else "no"
            raise ConfigurationError(f"key vault: master key must be 16 or 32 bytes, got {n}")
        self._aead = AESGCM(bytes(master_key))

    def __repr__(self) -> str:
        return "KeyVault(<master key hidden>)"

    @classmethod
    def from_env(cls, var: str = "OSGP_MASTER_KEY") -> KeyVault:
        """The master key as hex in the environment variable ``var``."""
        text = os.environ.get(var)
        if not text:
            raise ConfigurationError(f"key vault: environment variable {var} is not set")
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise ConfigurationError(f"key vault: {var} is not hex") from None

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> KeyVault:
        """The master key from a file of hex text or 32 raw bytes, readable by its owner only."""
        p = Path(path)
        try:
            mode = p.stat().st_mode
            data = p.read_bytes()
        except OSError as e:
            raise ConfigurationError(f"key vault: cannot read {p}: {e.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"key vault: {p} is accessible by group or others (mode {mode & 0o777:o}); "
                f"chmod 600 it"
            )
        if len(data) == 32 and not re.fullmatch(rb"[0-9A-Fa-f]{32}", data):
            return cls(data)
        try:
            return cls(bytes.fromhex(data.decode("ascii").strip()))
        except ValueError:
            raise ConfigurationError(f"key vault: {p} holds neither hex nor 32 raw bytes") from None

    def seal(self, device_id: int, purpose: str, key: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, bytes(key), _aad(device_id, purpose))

    def open(self, device_id: int, purpose: str, sealed: bytes) -> bytes:
        sealed = bytes(sealed)
        if len(sealed) < 1 + _NONCE + 16 or sealed[:1] != _VERSION:
            raise AuthenticationError(
                f"key vault: sealed {purpose!r} key of device {device_id} is malformed"
            )
        try:
            return self._aead.decrypt(
                sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :], _aad(device_id, purpose)
            )
        except InvalidTag:
            raise AuthenticationError(
                f"key vault: {purpose!r} key of device {device_id} does not open "
                f"(wrong master key, or the ciphertext belongs to another row)"
            ) from None


def _hex(text: str) -> Optional[bytes]:
    """The bytes of ``text`` as hex digits, spaces or colons allowed; None
    when it is not that."""
    digits = re.sub(r"[\s:]", "", text)
    if len(digits) % 2 == 0 and re.fullmatch(r"[0-9A-Fa-f]*", digits):
        return bytes.fromhex(digits)
    return None


def parse_key(text: str) -> bytes:
    """A key typed on the command line.

    * hex, with or without spaces or colons: ``01 01 ...``, ``01:01:...``, ``0101...``
      (a 12-byte OMA key, 16-byte MEP/AES keys, 20-byte optical passwords);
    * 20 printable ASCII characters: the form utilities issue for MEP and
      optical keys (an optical C12.18 password is 20 bytes, zero padded; a MEP
      key is up to 20 bytes of which the first 16 are used: MEP guide p.13-15;
      the 20-character read-only key: hendrikb/esphome-osgp-meter README).
      Twenty hex digits would be a 10-byte key, which no OSGP key is, so a
      20-character string is always read as ASCII.
    """
    if len(text) == 20 and text.isascii() and text.isprintable():
        return text.encode("ascii")
    key = _hex(text)
    if key:
        return key
    raise ConfigurationError(
        "key: expected hex (spaces or colons allowed) or 20 ASCII characters, "
        f"got {len(text)} characters that are neither"
    )


def parse_password(text: str) -> bytes:
    """An optical-port password typed on the command line.

    The C12.18 security service (0x51) carries a 20-byte password, zero
    padded (Optical guide p.12: it must match one of the meter's keys).
    Forty hex digits (spaces or colons allowed) give the 20 bytes as they
    are; anything else of at most 20 printable ASCII characters is the
    password itself, padded with zeros on the wire as other C12.18 clients
    (termineter's ``c1218``) pad it.
    """
    key = _hex(text)
    if key is not None and len(key) == 20:
        return key
    if len(text) <= 20 and text.isascii() and text.isprintable():
        return text.encode("ascii")
    raise ConfigurationError(
        "optical password: at most 20 printable ASCII characters or 40 hex digits, "
        f"got {len(text)} characters"
    )
