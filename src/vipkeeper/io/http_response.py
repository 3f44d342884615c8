"""HTTP/1.x responses to health checks, parsed as they arrive (sans-I/O: bytes in, status out).

Owns `ResponseReader` and `CheckError`, the error every failed check reports with its reason;
it never touches a socket.
"""

from __future__ import annotations

# A health check reads at most this much of a response body before declaring it failed.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"


class CheckError(Exception):
    """A check that did not pass; the message is the reason reported to the core."""


class ResponseReader:
    """One HTTP/1.x response, fed with what recv returned, however it was split (sans-I/O).

    Without `need_body` the response is complete at the end of its head (only the status
    counts); with it, the body is read by Content-Length, chunked coding or up to the close
    (RFC 9112 §6.3), at most MAX_RESPONSE_BYTES.
    """

    __slots__ = ("_body", "_chunk_at", "_chunked", "_expected", "_head", "_need_body", "body",
                 "status")  # fmt: skip

    def __init__(self, *, need_body: bool) -> None:
        self._need_body = need_body
        self._head: bytearray | None = None  # a head that came in more than one piece
        self._body: bytearray | None = None  # the raw body, once the head is complete
        self._chunked = False
        self._expected: int | None = None  # Content-Length
        self._chunk_at = 0  # where the next chunk-size line starts in the raw body
        self.status = 0
        self.body: bytes | None = None  # the decoded body, when needed and complete

    def feed(self, data: bytes) -> bool:
        """Take the next bytes (b"": the server closed); True once the response is complete."""
        if self._body is not None:
            return self._feed_body(data)
        if not data:
            raise CheckError("connection closed before the response headers")
        head: bytes | bytearray
        if self._head is None:
            head, search_from = data, 0
        else:
            head = self._head
            search_from = max(0, len(head) - 3)  # the blank line may straddle two pieces
            head += data
        end = head.find(b"\r\n\r\n", search_from)
        if end < 0:
            if len(head) > MAX_RESPONSE_BYTES:
                raise CheckError("response headers too large")
            if self._head is None:
                self._head = bytearray(data)
            return False
        self.status = _status(head, end)
        if not self._need_body:
            return True
        self._read_framing(head, end)
        self._body = bytearray(memoryview(head)[end + 4 :])
        if len(self._body) > MAX_RESPONSE_BYTES:
            raise CheckError("response body too large")
        return self._body_complete()

    def _read_framing(self, head: bytes | bytearray, end: int) -> None:
        transfer_encoding = b""
        length: bytes | None = None
        for line in bytes(head[:end]).split(b"\r\n")[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                continue
            name = name.strip().lower()
            if name == b"transfer-encoding":
                transfer_encoding = value.strip()
            elif name == b"content-length":
                length = value.strip()
        self._chunked = b"chunked" in transfer_encoding.lower()
        if length is not None and length.isdigit() and not self._chunked:
            self._expected = int(length)

    def _feed_body(self, data: bytes) -> bool:
        body = self._body
        assert body is not None
        if not data:
            if self._expected is not None or self._chunked:
                raise CheckError("connection closed before the end of the body")
            self.body = bytes(body)  # read to the close
            return True
        body += data
        if len(body) > MAX_RESPONSE_BYTES:
            raise CheckError("response body too large")
        return self._body_complete()

    def _body_complete(self) -> bool:
        body = self._body
        assert body is not None
        if self._chunked:
            if not self._chunks_complete(body):
                return False
            self.body = _dechunk(bytes(body))
            return True
        if self._expected is not None and len(body) >= self._expected:
            self.body = bytes(body[: self._expected])
            return True
        return False

    def _chunks_complete(self, body: bytearray) -> bool:
        """Whether the last chunk has arrived; remembers how far whole chunks were seen."""
        position = self._chunk_at
        while (line_end := body.find(b"\r\n", position)) >= 0:
            size = _chunk_size(body[position:line_end])
            if size == 0:
                return True  # the last chunk: a trailer section does not count
            after = line_end + 2 + size + 2
            if len(body) < after:
                break
            position = after
        self._chunk_at = position
        return False


def _status(head: bytes | bytearray, end: int) -> int:
    """The status code of the status line that starts `head` (whose blank line is at `end`)."""
    line_end = head.find(b"\r\n", 0, end)
    status_line = bytes(head[: end if line_end < 0 else line_end])
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise CheckError(f"malformed status line {status_line.decode('latin-1')[:80]!r}")
    return int(parts[1])


def _chunk_size(line: bytes | bytearray) -> int:
    """The size on a chunk-size line, its extensions ignored (RFC 9112 §7.1)."""
    digits = bytes(line).split(b";", 1)[0].strip()
    if not digits or digits.translate(None, _HEX_DIGITS):
        raise CheckError("malformed chunk size")
    return int(digits, 16)


def _dechunk(data: bytes) -> bytes:
    """Decode a complete chunked body (RFC 9112 §7.1); CheckError if it is cut short."""
    out = bytearray()
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            raise CheckError("truncated chunked body")
        size = _chunk_size(data[position:line_end])
        position = line_end + 2
        if size == 0:
            return bytes(out)  # the last chunk: any trailer section does not count
        if len(data) < position + size + 2:
            raise CheckError("truncated chunked body")
        out += data[position : position + size]
        position += size + 2
