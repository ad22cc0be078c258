#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/seed-* (run once; the
seeds are committed). The turn_server seeds are scripts for
turnpike_fuzz::Reader: each byte list mirrors the reads of one harness step
(see src/harness.rs)."""

import hashlib
import hmac
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "..", "tests", "vectors", "rfc5769.txt")
if not os.path.exists(VECTORS):
    VECTORS = "/work/shared/vectors/rfc5769.txt"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(bytes(data))


def vectors():
    out = {}
    for line in open(VECTORS, encoding="utf-8"):
        line = line.strip()
        if line.endswith("=") or "=" not in line or line.startswith("#"):
            continue
        k, v = (s.strip() for s in line.split("=", 1))
        if k.endswith(".hex"):
            out[k[:-4]] = bytes.fromhex(v)
    return out


def allocate_request():
    """An Allocate request signed as alice (MD5 long-term key)."""
    realm, nonce = b"turnpike.fuzz", b"obMatJos2AAAAAAAAAAAAAAAAAAAAAAA"
    attrs = b""

    def attr(t, v):
        pad = (4 - len(v) % 4) % 4
        return struct.pack("!HH", t, len(v)) + v + b"\0" * pad

    attrs += attr(0x0019, bytes([17, 0, 0, 0]))
    attrs += attr(0x0006, b"alice") + attr(0x0014, realm) + attr(0x0015, nonce)
    head = struct.pack("!HHI", 0x0003, len(attrs) + 24, 0x2112A442) + b"\x11" * 12
    key = hashlib.md5(b"alice:turnpike.fuzz:wonderland").digest()
    mac = hmac.new(key, head + attrs, hashlib.sha1).digest()
    return head + attrs + attr(0x0008, mac)


v = vectors()
for name, msg in v.items():
    write("stun_parse", "rfc5769-" + name, msg)
write("stun_parse", "allocate", allocate_request())

# framing: byte 0 = how many split bytes follow, then the stream.
stream = b"".join(v.values()) + bytes([0x40, 0x00, 0x00, 0x05]) + b"hello\0\0\0"
write("framing", "whole", [0] + list(stream))
write("framing", "split", [4, 1, 7, 19, 3] + list(stream))
write("framing", "channel-data", [2, 2, 5] + [0x40, 0x01, 0x00, 0x01, 0xAA, 0, 0, 0] * 3)

# RFC 3489 (classic) requests: Debian's stun client's test II, and one with
# RESPONSE-ADDRESS; framing with byte 0's top bit set frames them on a stream.
classic = bytes([0, 1, 0, 8]) + bytes(range(0x60, 0x70)) + bytes([0, 3, 0, 4, 0, 0, 0, 6])
write("stun_parse", "classic-test-ii", classic)
write("stun_parse", "classic-response-address",
      bytes([0, 1, 0, 12]) + bytes(range(0x70, 0x80)) + bytes([0, 2, 0, 8, 0, 1, 0x13, 0x88, 192, 0, 2, 1]))
write("framing", "classic", [0x80] + list(classic + v["request"]))

write("channel_data", "bound", [0x40, 0x00, 0x00, 0x04] + list(b"data"))
write("channel_data", "padded", [0x40, 0x00, 0x00, 0x03] + list(b"abc") + [0])
write("channel_data", "unbound", [0x4F, 0xFF, 0x00, 0x00])
write("channel_data", "send-indication", list(v["request"]))


# turn_server scripts. Knobs: three bytes (see harness::Knobs).
def signed(client, method, attrs=(), auth=(1,), before=(), fp=0):
    """op 0 (signed request), client, method index, class Request, then
    what build_request reads: the method's default attribute byte(s),
    attributes, nonce choice, realm choice, auth choice, no trailing
    attribute, FINGERPRINT flag."""
    return [0, client, method, 3, *before, len(attrs), *sum(attrs, []), 1, 1, *auth, 0xFF, fp]


ALLOCATE, REFRESH, PERMISSION, CHANNEL_BIND, CONNECT, CONNECTION_BIND = 0, 3, 4, 6, 8, 9
alloc_udp = signed(0, ALLOCATE, before=[0])
permit = signed(0, PERMISSION, before=[0, 0])
bind = signed(0, CHANNEL_BIND, attrs=[[4, 0, 0]], before=[0, 0])
send = [6, 0, 0, 0, 4, *b"ping", 1, 0xFF, 0]
chdata = [7, 0, 0, 0, 0, 4, *b"abcd", 1, 0]
peer = [8, 0, 0, 0, 2, 0, 3, *b"xyz", 1]
peer_denied = [8, 0, 0, 1, 2, 0, 3, *b"xyz", 1]
later = [10, 4, 0]
refresh0 = signed(0, REFRESH, attrs=[[1, 0]])
write("turn_server", "udp-relay",
      [0, 0, 0] + alloc_udp + permit + send + bind + chdata + peer + peer_denied
      + later + refresh0 + refresh0)

mac = list(range(20))
oauth = [7, 0, *mac, 0x75, 0x30, 0, 0, 3, 0, 1, 0xFF, 0]
write("turn_server", "tcp-oauth",
      [0, 6, 0]
      + signed(2, ALLOCATE, before=[0, 1])
      + signed(2, CONNECT, before=[0, 0])
      + [13, 3, 0, 1]
      + signed(3, CONNECTION_BIND, attrs=[[11, 0]])
      + signed(0, ALLOCATE, before=[0], auth=oauth)
      + signed(0, REFRESH, auth=[8])
      + [14, 0, 1, 0, 0] + later)

write("turn_server", "sha256-dual-rest",
      [0, 0, 0]
      + signed(4, ALLOCATE, attrs=[[8, 1, 1]], before=[0], auth=[3, 0], fp=1)
      + signed(4, PERMISSION, before=[0, 2], auth=[3, 0])
      + [6, 4, 2, 0, 2, *b"hi", 1, 0xFF, 0]
      + [8, 0, 0, 2, 2, 0, 2, *b"hi", 1]
      + signed(1, ALLOCATE, before=[0], auth=[4])
      + signed(5, ALLOCATE, before=[0], auth=[6, 0x0A, 0x28])
      + [10, 7, 0x0E, 0x10, 0])

write("turn_server", "even-port-reservation",
      [0, 0x40, 0]
      + signed(0, ALLOCATE, attrs=[[5, 0x80]], before=[0])
      + signed(1, ALLOCATE, attrs=[[6, 0]], before=[0])
      + [13, 0, 2] + signed(3, ALLOCATE, before=[0, 0]) + [10, 2, 0])

# oauth_token: mode byte, now (8 bytes), then the raw token (mode even) or
# the plaintext choices (mode odd).
now = struct.pack("!Q", 1_700_000_000 << 8)
write("oauth_token", "raw", [0] + list(now) + [0, 12] + [0] * 12 + [0x55] * 50)
plain = [1, 20, *range(20)] + list(struct.pack("!QI", 1_700_000_000 << 16, 3600)) + [0, 7]
write("oauth_token", "sealed", [1] + list(now) + plain)
write("oauth_token", "sealed-a128", [3] + list(now) + plain)
write("oauth_token", "bad-key-length", [5] + list(now) + [0, 0, 16, 16, *range(16)]
      + list(struct.pack("!QI", 1_700_000_000 << 16, 0)) + [0, 7])

write("config", "example", open(os.path.join(HERE, "..", "turnserver.toml"), "rb").read())
write("config", "small", b'listen = ["127.0.0.1:3478"]\nrealm = "example.org"\n'
      b'user = ["alice:secret"]\nmin_port = 50000\nmax_port = 50010\n')
write("config", "rfc5780", b'listen = ["192.0.2.1:3478"]\nrfc5780 = true\nalt_ip = "192.0.2.2"\n'
      b'relay_ip = ["192.0.2.1"]\nexternal_ip = ["203.0.113.1/192.0.2.1"]\n')
write("config", "bad", b'min_port = 70000\n')
