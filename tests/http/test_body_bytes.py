"""``BaseParser.body_bytes_received``: how much of a request's body has arrived, whether the
parser has returned it as Data yet or not, fed whole and one byte at a time, with the next
request's bytes behind it never counted (the server's received-bytes metric)."""
from __future__ import annotations

import pytest

from wsgiserve.http import NEED_DATA, Data, EndOfMessage, Request, RequestParser

CASES = [
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 5,
                 id="content-length"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n", 7, id="chunked"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, id="no-body"),
]
NEXT = b"GET /next HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"


def _request(parser: RequestParser) -> Request:
    event = parser.next_event()
    assert type(event) is Request
    return event


@pytest.mark.parametrize(("raw", "body_bytes"), CASES)
def test_counts_the_whole_body_once_read_and_not_the_next_request(raw: bytes,
                                                                   body_bytes: int) -> None:
    parser = RequestParser()
    parser.feed(raw + NEXT)
    framing = _request(parser).framing
    if framing.kind.name == "LENGTH":  # buffered, not yet returned as Data: counted
        assert parser.body_bytes_received(framing) == body_bytes
    read = 0
    while type(event := parser.next_event()) is not EndOfMessage:
        assert type(event) is Data
        read += len(event.data)
    assert read == body_bytes
    assert parser.body_bytes_received(framing) == body_bytes


@pytest.mark.parametrize(("raw", "body_bytes"), CASES)
def test_byte_by_byte_the_count_grows_to_the_body_and_never_past_it(raw: bytes,
                                                                     body_bytes: int) -> None:
    parser = RequestParser()
    head_end = raw.index(b"\r\n\r\n") + 4
    parser.feed(raw[:head_end])
    framing = _request(parser).framing
    counts = [parser.body_bytes_received(framing)]
    for i in range(head_end, len(raw)):
        parser.feed(raw[i:i + 1])
        while type(parser.next_event()) is Data:
            pass
        counts.append(parser.body_bytes_received(framing))
    assert counts == sorted(counts)
    assert counts[0] == 0 and counts[-1] == body_bytes
    parser.feed(NEXT)
    assert parser.body_bytes_received(framing) == body_bytes
    assert parser.next_event() is not NEED_DATA
