"""Replay every ``corpus/*.http`` file against the expected result in its ``.json`` twin.

The raw files are named after the RFC rule they exercise and kept byte-exact (``-text``
in ``.gitattributes``). A data file gives the role, the request methods a response
answers, whether the peer closes after the bytes, and the expected events, with bytes as
latin-1 text; a last ``{"trailing": ...}`` gives the bytes left unparsed. Each file is replayed whole, one byte at a time, and with extra bytes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from http_replay import Err, Item, Parser, Trailing, check_replays, closed

from wsgiserve import http as wsgiserve_http
from wsgiserve.http import (
    NEED_DATA,
    PAUSED,
    BodyKind,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Framing,
    Headers,
    HttpLimits,
    InformationalResponse,
    Request,
    RequestParser,
    Response,
    ResponseParser,
)

CORPUS = Path(__file__).parent / "corpus"
RAW_FILES = sorted(CORPUS.glob("*.http"))


def _b(text: str) -> bytes:
    return text.encode("latin-1")


def _headers(pairs: list[list[str]]) -> Headers:
    return Headers([(_b(name), _b(value)) for name, value in pairs])


def _framing(text: str) -> Framing:
    kind, _, size = text.partition(":")
    return Framing(BodyKind(kind), int(size) if size else 0)


def _item(spec: Any) -> Item:
    if spec == "NEED_DATA":
        return NEED_DATA
    if spec == "PAUSED":
        return PAUSED
    if spec == "closed":
        return ConnectionClosed()
    if "error" in spec:
        error = Err(getattr(wsgiserve_http, spec["error"]))
        assert error.status == spec["status"], f"{spec['error']} answers {error.status}"
        return error
    (key, value), = spec.items()
    if key == "request":
        return Request(_b(value["method"]), _b(value["target"]), _b(value["version"]),
                       _headers(value["headers"]), _framing(value["framing"]),
                       value["keep_alive"], value["expects_continue"])
    if key in ("response", "informational"):
        cls = Response if key == "response" else InformationalResponse
        return cls(value["status"], _b(value["reason"]), _b(value["version"]),
                   _headers(value["headers"]), _framing(value["framing"]), value["keep_alive"])
    if key == "data":
        return Data(_b(value))
    if key == "end":
        return EndOfMessage(_headers(value["trailers"]))
    if key == "trailing":
        return Trailing(_b(value))
    raise ValueError(f"unknown corpus event {spec!r}")


def test_corpus_is_there() -> None:
    assert len(RAW_FILES) >= 20
    for raw in RAW_FILES:
        assert raw.with_suffix(".json").is_file(), f"{raw.name} has no .json"
    # CRLFs stay exact: a checkout that converted them would break every case.
    assert b"\r\n" in (CORPUS / "rfc9112-6.3-cl-and-te.http").read_bytes()
    assert b"\r" not in (CORPUS / "rfc9112-2.2-bare-lf.http").read_bytes()


@pytest.mark.parametrize("path", RAW_FILES, ids=[p.stem for p in RAW_FILES])
def test_corpus_file(path: Path) -> None:
    spec = json.loads(path.with_suffix(".json").read_text())
    raw = path.read_bytes()
    limits = HttpLimits(**spec.get("limits", {}))
    if spec["role"] == "request":
        def make() -> Parser:
            return RequestParser(limits)
    else:
        def make() -> Parser:
            parser = ResponseParser(limits)
            for method in spec["methods"]:
                parser.expect_response(_b(method))
            return parser
    check_replays(make, closed(raw) if spec.get("peer_closes") else raw,
                  [_item(event) for event in spec["expect"]])
