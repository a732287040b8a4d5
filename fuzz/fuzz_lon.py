"""atheris harness: LonTalk LPDU/NPDU, CN/IP, proxy frames."""

from _common import expect_decode_errors, main

from osgp.link import lon, lon_proxy


def test_one_input(data: bytes) -> None:
    expect_decode_errors(lon.decode_npdu, data)
    expect_decode_errors(lon.decode_lpdu, data)
    expect_decode_errors(lambda d: lon.decode_lpdu(d, crc=False), data)
    expect_decode_errors(lon.decode_cnip, data)
    expect_decode_errors(lon_proxy.decode_proxy, data)
    expect_decode_errors(lon_proxy.decode_proxy_response, data)


if __name__ == "__main__":
    main(test_one_input)
