"""atheris harness: the reconstructed ATM discovery and commissioning messages."""

from _common import expect_decode_errors, main

from osgp.services import atm


def test_one_input(data: bytes) -> None:
    expect_decode_errors(atm.decode, data)
    expect_decode_errors(lambda d: atm.decode(d, response=True), data)
    expect_decode_errors(atm.decode_commission, data)


if __name__ == "__main__":
    main(test_one_input)
