"""atheris harness: transactions, procedures, PED, device session input."""

from _common import expect_decode_errors, main

from osgp.services import messages as m
from osgp.services import procedures as P
from osgp.services import transactions as T


def test_one_input(data: bytes) -> None:
    expect_decode_errors(T.Transaction.decode, data)
    expect_decode_errors(P.ProcedureCall.decode, data)
    expect_decode_errors(P.ProcedureResult.decode, data)
    expect_decode_errors(m.PED.decode, data)


if __name__ == "__main__":
    main(test_one_input)
