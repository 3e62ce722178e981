"""A local KiteTicker WebSocket server for tests: the REAL `kiteconnect.KiteTicker` connects to it.

It speaks just enough RFC 6455 on plain sockets (handshake, masked client
frames, unmasked server frames, ping/pong, close), so it needs no Twisted
reactor of its own and runs in a thread of the test process while the ticker
under test (a subprocess, with its own reactor) connects to `fake.url`.

What it sends are Kite's binary frames built from the REAL packets in
`../shared/data/kite-mocks/*.packet`, with fields rewritten at the offsets
that `kiteconnect.ticker.KiteTicker._parse_binary` reads (all big-endian):

    frame   = uint16 packet count, then per packet: uint16 length + packet bytes
    packet  quote (44 bytes) and full (184 bytes) modes share the first 44:
      [0:4]   instrument_token
      [4:8]   last_price in paise (price * 100; NSE's divisor)
      [16:20] volume_traded (cumulative day volume)
    full only:
      [44:48] last_trade_time, epoch seconds
      [60:64] exchange_timestamp, epoch seconds
    heartbeat = a 1-byte binary frame (the client ignores anything under 2 bytes)

It records the clients' text messages (`{"a": "subscribe"|"mode", "v": ...}`)
and the query string of each handshake (api_key, access_token), and sends each
instrument's packets in the mode the client asked for (quote unless a "mode"
message said otherwise). Silence (to trip the stale-feed watchdog) is simply
not calling `send_ticks`; heartbeats go on meanwhile, as Kite's do; sending
again resumes. `drop_connections()` cuts every socket (a network failure) and
`refusing = True` closes new connections before the handshake (an outage), to
exercise KiteTicker's reconnects.

`python -m tests.support.fake_ticker --port 8765 --mocks ../shared/data/kite-mocks`
serves a slow random walk to whatever is subscribed, for demos.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
QUOTE_LEN, FULL_LEN = 44, 184
HEARTBEAT = b"\x00"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class TickSpec:
    """One tick to send. `time` (exchange timestamp) only reaches the client in full mode."""

    token: int
    price: Decimal
    volume: int
    time: datetime | None = None


def load_packets(mocks_dir: Path) -> dict[str, bytes]:
    """The real un-framed packets by mode: {"quote": 44 bytes, "full": 184 bytes}."""
    packets = {mode: base64.b64decode((mocks_dir / f"ticker_{mode}.packet").read_text()) for mode in ("quote", "full")}
    assert len(packets["quote"]) == QUOTE_LEN and len(packets["full"]) == FULL_LEN, "unexpected packet sizes"
    return packets


def rewrite_packet(template: bytes, spec: TickSpec) -> bytes:
    """The template packet with token, price, cumulative volume and (full mode) timestamps replaced."""
    packet = bytearray(template)
    struct.pack_into(">I", packet, 0, spec.token)
    struct.pack_into(">I", packet, 4, int((spec.price * 100).to_integral_value()))
    struct.pack_into(">I", packet, 16, spec.volume)
    if len(packet) == FULL_LEN and spec.time is not None:
        epoch = int(spec.time.timestamp())
        struct.pack_into(">I", packet, 44, epoch)
        struct.pack_into(">I", packet, 60, epoch)
    return bytes(packet)


def frame_packets(packets: list[bytes]) -> bytes:
    """Kite's binary message: a packet count, then each packet behind its length."""
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, unfragmented server frame."""
    size = len(payload)
    if size < 126:
        header = struct.pack(">BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack(">BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack(">BBQ", 0x80 | opcode, 127, size)
    return header + payload


class _Connection:
    def __init__(self, sock: socket.socket, query: str) -> None:
        self.sock = sock
        self.query = query
        self.lock = threading.Lock()
        self.open = True

    def send(self, opcode: int, payload: bytes) -> None:
        with self.lock:
            if not self.open:
                return
            try:
                self.sock.sendall(ws_frame(opcode, payload))
            except OSError:
                self.open = False

    def close(self) -> None:
        self.open = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class FakeTicker:
    def __init__(self, mocks_dir: Path, *, port: int = 0, heartbeat_seconds: float = 1.0) -> None:
        self.packets = load_packets(mocks_dir)
        self.heartbeat_seconds = heartbeat_seconds
        self.messages: list[dict[str, Any]] = []  # every text message from a client, parsed
        self.handshakes: list[str] = []  # the query string of every accepted connection
        self.modes: dict[int, str] = {}  # token -> the mode the client asked for
        self.frames_sent = 0
        self.refusing = False  # when True, new connections are closed before the handshake (an outage)
        self.refused = 0
        self._port = port
        self._server: socket.socket | None = None
        self._connections: list[_Connection] = []
        self._lock = threading.RLock()  # re-entrant: wait_until predicates may call connected()
        self._stopped = threading.Event()
        self.changed = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake ticker first"
        return f"ws://127.0.0.1:{self._server.getsockname()[1]}"

    def start(self) -> FakeTicker:
        self._server = socket.create_server(("127.0.0.1", self._port))
        for target in (self._accept_loop, self._heartbeat_loop):
            threading.Thread(target=target, name=f"fake-ticker-{target.__name__}", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        """Close every client socket without a close frame: what a network failure looks like."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def send_ticks(self, ticks: list[TickSpec]) -> None:
        """One binary frame with a packet per tick, to every connected client."""
        with self._lock:
            packets = [rewrite_packet(self.packets[self.modes.get(t.token, "quote")], t) for t in ticks]
            self.frames_sent += 1
        self._broadcast(OP_BINARY, frame_packets(packets))

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Wait until `predicate()` (evaluated under the lock as clients talk) holds."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def connected(self) -> int:
        with self._lock:
            return sum(1 for c in self._connections if c.open)

    def _broadcast(self, opcode: int, payload: bytes) -> None:
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.send(opcode, payload)

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self.heartbeat_seconds):
            self._broadcast(OP_BINARY, HEARTBEAT)

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stopped.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), name="fake-ticker-conn", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        if self.refusing:
            with self.changed:
                self.refused += 1
                self.changed.notify_all()
            sock.close()
            return
        try:
            conn = self._handshake(sock)
        except (OSError, ValueError):
            sock.close()
            return
        with self.changed:
            self._connections.append(conn)
            self.handshakes.append(conn.query)
            self.changed.notify_all()
        with contextlib.suppress(OSError, ConnectionError):
            self._read_loop(conn)
        conn.close()
        with self.changed:
            if conn in self._connections:
                self._connections.remove(conn)
            self.changed.notify_all()

    def _handshake(self, sock: socket.socket) -> _Connection:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = sock.recv(4096)
            if not chunk:
                raise ValueError("client went away during the handshake")
            request += chunk
        lines = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        target = lines[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        digest = hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode(), usedforsecurity=False).digest()
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
        )
        return _Connection(sock, target.partition("?")[2])

    def _read_loop(self, conn: _Connection) -> None:
        message, message_op = b"", OP_TEXT
        while True:
            fin, opcode, payload = _read_frame(conn.sock)
            if opcode == OP_CLOSE:
                conn.send(OP_CLOSE, payload[:2])
                return
            if opcode == OP_PING:
                conn.send(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_CONT:
                message, message_op = b"", opcode
            message += payload
            if fin and message_op == OP_TEXT:
                self._record(json.loads(message))

    def _record(self, data: dict[str, Any]) -> None:
        with self.changed:
            self.messages.append(data)
            if data.get("a") == "subscribe":
                for token in data["v"]:
                    self.modes.setdefault(int(token), "quote")
            elif data.get("a") == "mode":
                mode, tokens = data["v"]
                for token in tokens:
                    self.modes[int(token)] = mode
            self.changed.notify_all()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client closed the socket")
        data += chunk
    return data


def _read_frame(sock: socket.socket) -> tuple[bool, int, bytes]:
    first, second = _recv_exact(sock, 2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack(">H", _recv_exact(sock, 2))[0]
    elif size == 127:
        size = struct.unpack(">Q", _recv_exact(sock, 8))[0]
    mask = _recv_exact(sock, 4) if second & 0x80 else b"\x00\x00\x00\x00"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_recv_exact(sock, size)))
    return bool(first & 0x80), first & 0x0F, payload


def _demo(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a random walk to a KiteTicker client, for demos.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--mocks", type=Path, default=Path("../shared/data/kite-mocks"))
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    args = parser.parse_args(argv)
    fake = FakeTicker(args.mocks, port=args.port).start()
    print(f"fake KiteTicker on {fake.url} (KITE_TICKER_ROOT={fake.url})", flush=True)
    prices: dict[int, Decimal] = {}
    volumes: dict[int, int] = {}
    rng = random.Random(0)  # demo prices, not secrets
    while True:
        time.sleep(args.interval)
        ticks = []
        for token in list(fake.modes):
            step = Decimal(rng.choice((-10, -5, 0, 5, 10))) / 100
            prices[token] = max(Decimal("1.00"), prices.get(token, Decimal("1000.00")) + step)
            volumes[token] = volumes.get(token, 0) + rng.randint(1, 500)
            ticks.append(TickSpec(token, prices[token], volumes[token], datetime.now().astimezone()))
        if ticks:
            fake.send_ticks(ticks)


if __name__ == "__main__":
    _demo()
