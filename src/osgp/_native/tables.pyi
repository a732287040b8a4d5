from typing import Any, Optional, Sequence

GEOMETRY_FIELDS: tuple[str, ...]
NONE: int

def table_run(
    program: Any, params: Sequence[int], data: Any, nregs: int
) -> tuple[list[int], int]: ...
def lp_decode(
    geometry: Sequence[int],
    data: Any,
    blocks: Any,
    lasts: Optional[Any],
    values: Any,
    status: Any,
    flags: Any,
    times: Any,
    valid: Any,
    counts: Any = None,
) -> int: ...
def lp_decode_batch(
    geometry: Sequence[int],
    datas: Sequence[Any],
    blocks_list: Sequence[Any],
    lasts_list: Optional[Sequence[Any]],
    values: Any,
    status: Any,
    flags: Any,
    times: Any,
    valid: Any,
) -> list[int]: ...
def lp_decode_images(
    geometry: Sequence[int],
    datas: Sequence[Any],
    blocks: Any,
    starts: Any,
    lasts: Optional[Any],
    values: Any,
    status: Any,
    flags: Any,
    times: Any,
    valid: Any,
    counts: Any = None,
) -> int: ...
def table_decode(
    program: Any, shape: tuple, params: Sequence[int], data: Any, nregs: int
) -> Any: ...
def table_columns(cells: Any, data: Any, offsets: Any, size: int, cols: Sequence[Any]) -> None: ...
