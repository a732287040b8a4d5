# Hand-written stub of osgp._native.aes (twin: osgp._reference.aes).
# Authentication failure: the single calls (ccm_open, AesKey.ccm_open) raise
# osgp.errors.AuthenticationError; the batch calls (ccm_open_many,
# ccm_open_packed) never raise for a message that does not verify and return
# ``ok``, a bytes of n flags (1 verified, 0 not) as their last item.
from collections.abc import Iterable, Sequence
from typing import Any, Optional, Union

from typing_extensions import Buffer, disjoint_base

BLOCK_SIZE: int
KEY_SIZE: int

@disjoint_base
class AesKey:
    key_size: int
    def __new__(cls, key: Buffer) -> AesKey: ...
    def encrypt_block(self, block: Buffer) -> bytes: ...
    def aes_cmac(self, data: Buffer, tag_len: int = 16) -> bytes: ...
    def ccm_seal(
        self,
        nonce: Buffer,
        plaintext: Buffer,
        aad: Buffer = b"",
        tag_len: int = 8,
        *,
        out: Optional[Buffer] = None,
    ) -> Any: ...
    def ccm_open(
        self,
        nonce: Buffer,
        data: Buffer,
        aad: Buffer = b"",
        tag_len: int = 8,
        *,
        out: Optional[Buffer] = None,
    ) -> Any: ...
    def ccm_seal_many(
        self,
        nonces: Iterable[Buffer],
        plaintexts: Iterable[Buffer],
        aads: Union[None, Buffer, Iterable[Buffer]] = None,
        tag_len: int = 8,
    ) -> list[bytes]: ...
    def ccm_open_many(
        self,
        nonces: Iterable[Buffer],
        datas: Iterable[Buffer],
        aads: Union[None, Buffer, Iterable[Buffer]] = None,
        tag_len: int = 8,
    ) -> tuple[list[Optional[bytes]], bytes]: ...
    def cmac_many(self, messages: Iterable[Buffer], tag_len: int = 16) -> list[bytes]: ...
    def cmac_kdf(self, data: Buffer, length: int) -> bytes: ...

_Key = Union[Buffer, AesKey]
_Keys = Union[_Key, Iterable[_Key]]

def encrypt_block(key: _Key, block: Buffer) -> bytes: ...
def aes_cmac(key: _Key, data: Buffer, tag_len: int = 16) -> bytes: ...
def cmac_kdf(key: _Key, data: Buffer, length: int) -> bytes: ...
def ccm_seal(
    key: _Key,
    nonce: Buffer,
    plaintext: Buffer,
    aad: Buffer = b"",
    tag_len: int = 8,
    *,
    out: Optional[Buffer] = None,
) -> Any: ...
def ccm_open(  # AuthenticationError on a bad tag
    key: _Key,
    nonce: Buffer,
    data: Buffer,
    aad: Buffer = b"",
    tag_len: int = 8,
    *,
    out: Optional[Buffer] = None,
) -> Any: ...
def ccm_seal_many(
    keys: _Keys,
    nonces: Iterable[Buffer],
    plaintexts: Iterable[Buffer],
    aads: Union[None, Buffer, Iterable[Buffer]] = None,
    tag_len: int = 8,
) -> list[bytes]: ...
def ccm_open_many(
    keys: _Keys,
    nonces: Iterable[Buffer],
    datas: Iterable[Buffer],
    aads: Union[None, Buffer, Iterable[Buffer]] = None,
    tag_len: int = 8,
) -> tuple[list[Optional[bytes]], bytes]: ...  # (plaintexts, ok); None where ok[i] == 0
def cmac_many(keys: _Keys, messages: Iterable[Buffer], tag_len: int = 16) -> list[bytes]: ...
def ccm_seal_packed(
    key: _Key,
    nonces: Buffer,
    data: Buffer,
    offsets: Buffer,
    *,
    aad: Optional[Buffer] = None,
    aad_offsets: Optional[Buffer] = None,
    tag_len: int = 8,
    key_size: Optional[int] = None,
    out: Optional[Buffer] = None,
) -> Any: ...
def ccm_open_packed(
    key: _Key,
    nonces: Buffer,
    data: Buffer,
    offsets: Buffer,
    *,
    aad: Optional[Buffer] = None,
    aad_offsets: Optional[Buffer] = None,
    tag_len: int = 8,
    key_size: Optional[int] = None,
    out: Optional[Buffer] = None,
) -> tuple[Any, bytes]: ...  # (out, ok); a failed message's plaintext is zeroed
def cmac_packed(
    key: _Key,
    data: Buffer,
    offsets: Buffer,
    *,
    tag_len: int = 16,
    key_size: Optional[int] = None,
    out: Optional[Buffer] = None,
) -> Any: ...
def aes_path() -> str: ...
def cpu_features() -> frozenset[str]: ...
def set_cpu_features(names: Optional[Sequence[str]] = None) -> None: ...
