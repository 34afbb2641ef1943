"""Tor's control protocol, sans-IO: replies recorded from a real tor 0.4.9, fed in every chunking."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random

import pytest

from p2pchat.core import torcontrol as tc
from p2pchat.errors import P2PChatError

# Recorded from tor 0.4.9.11 (a DisableNetwork tor, and the torlab's onion host).
PROTOCOLINFO = (
    b"250-PROTOCOLINFO 1\r\n"
    b'250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/tmp/tortest/data/control_auth_cookie"\r\n'
    b'250-VERSION Tor="0.4.9.11"\r\n'
    b"250 OK\r\n"
)
SERVICE_ID = "sxlvgyipun4oyiugts554e3tfgzojnm3cdsxrvqzts523g54sd3q5xyd"
PRIVATE_KEY = "ED25519-V3:CItZCgOUvR1dMImzl73W/Ygul9xOGFGHEGSbcfMmvW07SbtQGISx+Ml1Mprqa0xcuYTB+Hyh9SPyxtYEOhUOJw=="
ADD_ONION = f"250-ServiceID={SERVICE_ID}\r\n250-PrivateKey={PRIVATE_KEY}\r\n250 OK\r\n".encode()
CONFIG_TEXT = (
    b"250+config-text=\r\n"
    b"ControlPort 19051\r\n"
    b"CookieAuthentication 1\r\n"
    b"..leading dot, doubled on the wire\r\n"
    b"DisableNetwork 1\r\n"
    b".\r\n"
    b"250 OK\r\n"
)
GETINFO = (
    b'250-net/listeners/socks="127.0.0.1:9050" "unix:/run/tor/socks" "[::1]:9150"\r\n'
    b'250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"\r\n'
    b"250 OK\r\n"
)
UPLOADED = f"650 HS_DESC UPLOADED {SERVICE_ID} UNKNOWN $78A9EF36F5986B36D1804C39D4B984A0D88FF64B~test000a\r\n".encode()
UPLOAD = (
    f"650 HS_DESC UPLOAD {SERVICE_ID} UNKNOWN $2687D47FF8916BCB8286B28F33DC2E46E8B126E5~test003r "
    "HF5EDxd+aDMBawDyHqLpwHnkWsT3+1Pr3MZaptrUjpA "
    "HSDIR_INDEX=8AC157B7FB56155EB5B5D190078DA9C7D77F091B01DFA8B814E5A19CE72F748A\r\n"
).encode()
CREATED = f"650 HS_DESC CREATED {SERVICE_ID} UNKNOWN UNKNOWN HF5EDxd+aDMBawDyHqLpwHnkWsT3+1Pr3MZaptrUjpA\r\n".encode()
FAILED = (
    f"650 HS_DESC FAILED {SERVICE_ID} UNKNOWN $2687D47FF8916BCB8286B28F33DC2E46E8B126E5~test003r "
    "REASON=UPLOAD_REJECTED\r\n"
).encode()


def parse(data: bytes, chunk: int | None = None) -> list[tc.Reply]:
    parser = tc.ReplyParser()
    if chunk is None:
        replies = parser.receive_data(data)
    else:
        replies = []
        for i in range(0, len(data), chunk):
            replies += parser.receive_data(data[i : i + chunk])
    assert not parser.pending
    return replies


@pytest.mark.parametrize("chunk", [None, 1, 2, 7, 64])
def test_any_chunking_gives_the_same_replies(chunk: int | None) -> None:
    stream = PROTOCOLINFO + CREATED + ADD_ONION + CONFIG_TEXT + UPLOADED + b"250 OK\r\n"
    replies = parse(stream, chunk)
    assert [r.status for r in replies] == [250, 650, 250, 250, 650, 250]
    assert [r.is_event for r in replies] == [False, True, False, False, True, False]
    assert replies == parse(stream)


def test_protocolinfo() -> None:
    (reply,) = parse(PROTOCOLINFO)
    info = tc.parse_protocolinfo(reply)
    assert info == tc.ProtocolInfo(
        frozenset({"COOKIE", "SAFECOOKIE"}), "/tmp/tortest/data/control_auth_cookie", "0.4.9.11"
    )


def test_protocolinfo_with_escapes_in_the_cookie_path() -> None:
    data = b'250-AUTH METHODS=NULL,HASHEDPASSWORD COOKIEFILE="/a \\"b\\"\\\\c\\303\\251\\n"\r\n250 OK\r\n'
    info = tc.parse_protocolinfo(parse(data)[0])
    assert info.methods == {"NULL", "HASHEDPASSWORD"}
    assert info.cookie_file == '/a "b"\\cé\n'


def test_protocolinfo_without_methods_is_refused() -> None:
    with pytest.raises(tc.ControlProtocolError):
        tc.parse_protocolinfo(parse(b"250-PROTOCOLINFO 1\r\n250 OK\r\n")[0])


def test_data_block_is_dot_unstuffed() -> None:
    (reply,) = parse(CONFIG_TEXT)
    values = tc.parse_getinfo(reply)
    assert values["config-text"] == (
        "ControlPort 19051\nCookieAuthentication 1\n.leading dot, doubled on the wire\nDisableNetwork 1"
    )
    assert reply.lines[0].data is not None and reply.lines[1].data is None


def test_getinfo_and_socks_listeners() -> None:
    values = tc.parse_getinfo(parse(GETINFO)[0])
    assert tc.parse_listeners(values["net/listeners/socks"]) == [("127.0.0.1", 9050), ("::1", 9150)]
    assert values["status/bootstrap-phase"].startswith("NOTICE BOOTSTRAP PROGRESS=100")
    assert tc.parse_listeners("") == []
    assert tc.parse_listeners('"127.0.0.1:0" "x" 127.0.0.1:9050') == [("127.0.0.1", 9050)]


def test_getconf() -> None:
    assert tc.parse_getconf(parse(b"250 DisableNetwork=1\r\n")[0]) == {"DisableNetwork": "1"}
    assert tc.parse_getconf(parse(b"250-SocksPort\r\n250 ControlPort=9051\r\n")[0]) == {
        "SocksPort": None,
        "ControlPort": "9051",
    }


def test_add_onion_reply() -> None:
    added = tc.parse_add_onion(parse(ADD_ONION)[0])
    assert added == tc.AddedOnion(SERVICE_ID, PRIVATE_KEY)
    discarded = tc.parse_add_onion(parse(f"250-ServiceID={SERVICE_ID}\r\n250 OK\r\n".encode())[0])
    assert discarded.private_key is None


@pytest.mark.parametrize(
    "data",
    [
        b"250 OK\r\n",  # no ServiceID
        b"250-ServiceID=abc\r\n250 OK\r\n",  # not 56 base32 characters
        f"250-ServiceID={SERVICE_ID[:-1]}a\r\n250 OK\r\n".encode(),  # checksum wrong
        f"250-ServiceID={SERVICE_ID}\r\n250-PrivateKey=RSA1024:AAAA\r\n250 OK\r\n".encode(),
    ],
)
def test_add_onion_reply_malformed(data: bytes) -> None:
    with pytest.raises(tc.ControlProtocolError if b"RSA" not in data else ValueError):
        tc.parse_add_onion(parse(data)[0])


def test_errors_raise_with_status_and_text() -> None:
    (reply,) = parse(b"550 Onion address collision\r\n")
    assert not reply.ok
    with pytest.raises(tc.ControlReplyError) as caught:
        reply.check()
    assert caught.value.status == 550 and caught.value.text == "Onion address collision"
    (reply,) = parse(b"515 Authentication failed: Authentication cookie did not match expected value.\r\n")
    with pytest.raises(tc.ControlReplyError, match="515 Authentication failed"):
        tc.parse_protocolinfo(reply)
    (reply,) = parse(b'510 Unrecognized command "FOO"\r\n')
    assert reply.status == 510


def test_hs_desc_events() -> None:
    uploaded = tc.parse_hs_desc(parse(UPLOADED)[0])
    assert uploaded == tc.HsDescEvent(
        "UPLOADED", SERVICE_ID, "$78A9EF36F5986B36D1804C39D4B984A0D88FF64B~test000a", None
    )
    upload = tc.parse_hs_desc(parse(UPLOAD)[0])
    assert upload is not None and upload.action == "UPLOAD"
    failed = tc.parse_hs_desc(parse(FAILED)[0])
    assert failed is not None and failed.reason == "UPLOAD_REJECTED"
    assert tc.parse_hs_desc(parse(b"650 CIRC 1 BUILT\r\n")[0]) is None
    assert tc.parse_hs_desc(parse(b"250 OK\r\n")[0]) is None


def test_publish_watch_waits_for_our_upload() -> None:
    watch = tc.PublishWatch(SERVICE_ID)
    other = UPLOADED.replace(SERVICE_ID.encode(), b"76jqi6h7d737rcciuudkd3afsijsc5n7n4etf2otbk3jv66v2wd2zvqd")
    for data in (CREATED, UPLOAD, FAILED, other):
        assert not watch.observe(parse(data)[0])
    assert watch.failures == ["UPLOAD_REJECTED"]
    assert watch.observe(parse(UPLOADED)[0])


@pytest.mark.parametrize(
    "data",
    [
        b"25 OK\r\n",
        b"250OK\r\n",
        b"abc OK\r\n",
        b"\r\n",
        b"250*OK\r\n",
    ],
)
def test_malformed_lines(data: bytes) -> None:
    with pytest.raises(tc.ControlProtocolError):
        tc.ReplyParser().receive_data(data)


def test_limits() -> None:
    parser = tc.ReplyParser()
    with pytest.raises(tc.ControlProtocolError):
        parser.receive_data(b"250 " + b"x" * (tc.MAX_LINE + 1))  # no newline yet, already too long
    parser = tc.ReplyParser()
    with pytest.raises(tc.ControlProtocolError):
        for _ in range(tc.MAX_REPLY // 1000 + 2):
            parser.receive_data(b"250-" + b"x" * 996 + b"\r\n")


def test_quoted_strings() -> None:
    assert tc.unquote('"a\\tb\\101"rest') == ("a\tbA", 10)
    for bad in ('"open', 'no quote"', '"bad \\q escape"', '"\\777"'):
        with pytest.raises(tc.ControlProtocolError):
            tc.unquote(bad)
    for value in (b"", b"plain", b'q"uo\\te', b"line\r\nbreak", "pässwörd".encode(), bytes(range(256))):
        quoted = tc.quote(value)
        assert quoted.isascii() and quoted.isprintable()
        assert tc.unquote(quoted)[0].encode("utf-8", "surrogateescape") == value


def test_keywords() -> None:
    words, values = tc.keywords('AUTH METHODS=COOKIE COOKIEFILE="/x y" Tor="0.4"  FLAG')
    assert words == ["AUTH", "FLAG"]
    assert values == {"METHODS": "COOKIE", "COOKIEFILE": "/x y", "Tor": "0.4"}


def test_commands() -> None:
    assert tc.protocolinfo() == b"PROTOCOLINFO 1\r\n"
    assert tc.authenticate() == b"AUTHENTICATE\r\n"
    assert tc.authenticate(b"\x01\xab") == b"AUTHENTICATE 01ab\r\n"
    assert tc.authchallenge(bytes(32)) == b"AUTHCHALLENGE SAFECOOKIE " + b"00" * 32 + b"\r\n"
    assert tc.authenticate_password('a "b"') == b'AUTHENTICATE "a \\"b\\""\r\n'
    assert tc.add_onion(None, 9090, ("127.0.0.1", 4000), keep_key=True) == (
        b"ADD_ONION NEW:ED25519-V3 Port=9090,127.0.0.1:4000\r\n"
    )
    assert tc.add_onion(None, 80, ("127.0.0.1", 4000), keep_key=False) == (
        b"ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,127.0.0.1:4000\r\n"
    )
    assert tc.add_onion(PRIVATE_KEY, 9090, ("127.0.0.1", 4000), keep_key=True) == (
        f"ADD_ONION {PRIVATE_KEY} Flags=DiscardPK Port=9090,127.0.0.1:4000\r\n".encode()
    )
    assert tc.del_onion(SERVICE_ID) == f"DEL_ONION {SERVICE_ID}\r\n".encode()
    assert tc.getinfo("a", "b") == b"GETINFO a b\r\n"
    assert tc.setevents("HS_DESC") == b"SETEVENTS HS_DESC\r\n"
    assert tc.setevents() == b"SETEVENTS\r\n"


@pytest.mark.parametrize("word", ["a b", "x\r\nQUIT", "", "caf\u00e9", "tab\there"])
def test_commands_refuse_injection(word: str) -> None:
    with pytest.raises(ValueError):
        tc.getinfo(word)


def test_safecookie_hashes_match_tor() -> None:
    # Recorded from tor 0.4.9.11: its AUTHCHALLENGE answer to this cookie and client nonce, and the
    # client hash it then accepted with "250 OK".
    cookie = bytes.fromhex("561ac6434e1e476205480d721a34b278cd919e34fc4d365c6a7ad1661be6d43b")
    client_nonce = bytes(range(32))
    reply = parse(
        b"250 AUTHCHALLENGE SERVERHASH=C3A4682D9CF8BFF8416440E13F8CB598B8DA51410383E2A6E53AA508BD038379 "
        b"SERVERNONCE=72140DDF48947CB4ABBE855E0FBF2B98E38D4675F14A1F5337537216648439BC\r\n"
    )[0]
    server_hash, server_nonce = tc.parse_authchallenge(reply)
    expected, client = tc.safecookie_hashes(cookie, client_nonce, server_nonce)
    assert tc.server_hash_matches(expected, server_hash)
    assert client.hex() == "2900414904a6fc1dcdc76a46ed257d6248c3ad111d4bf0ab125590444c44d17a"
    assert not tc.server_hash_matches(expected, client)
    wrong, _ = tc.safecookie_hashes(bytes(32), client_nonce, server_nonce)
    assert not tc.server_hash_matches(wrong, server_hash)


def test_authchallenge_reply() -> None:
    line = (
        b"250 AUTHCHALLENGE SERVERHASH=39CF9F9CCB376C864C5898DBBFAAFFDFA9F6E388E813A034A263B56D779D517A "
        b"SERVERNONCE=24D8BAEA2549D74728895AB2B2FE83B84F7459E15A4FAE9F073C545639DB51B5\r\n"
    )
    server_hash, server_nonce = tc.parse_authchallenge(parse(line)[0])
    assert server_hash.hex().upper().startswith("39CF9F9C") and len(server_nonce) == 32
    for bad in (
        b"250 AUTHCHALLENGE SERVERHASH=00\r\n",
        b"250 OK\r\n",
        b"250 AUTHCHALLENGE SERVERHASH=zz SERVERNONCE=00\r\n",
    ):
        with pytest.raises(tc.ControlProtocolError):
            tc.parse_authchallenge(parse(bad)[0])


def test_onion_addresses() -> None:
    assert tc.is_service_id(SERVICE_ID)
    assert not tc.is_service_id(SERVICE_ID.upper())
    assert not tc.is_service_id(SERVICE_ID[:-2] + "ab")
    # A v3 address is base32(key | checksum | version 3): build one from any key.
    key = bytes(range(32))
    checksum = hashlib.sha3_256(b".onion checksum" + key + b"\x03").digest()[:2]
    made = base64.b32encode(key + checksum + b"\x03").decode().lower()
    assert tc.is_service_id(made)
    assert not tc.is_service_id(base64.b32encode(key + checksum + b"\x02").decode().lower())
    assert tc.is_onion("X.ONION") and tc.is_onion("a.onion.") and not tc.is_onion("onion.example")
    assert tc.check_private_key(PRIVATE_KEY) == PRIVATE_KEY
    for bad in ("ED25519-V3:", "ED25519-V3:AAAA", "RSA1024:" + PRIVATE_KEY.partition(":")[2], "ED25519-V3:@@"):
        with pytest.raises(ValueError):
            tc.check_private_key(bad)


def test_printable() -> None:
    assert tc.printable("ok\x1b[31m\n\u202e") == "ok?[31m??"
    assert tc.printable(b"\xff".decode("utf-8", "surrogateescape")) == "?"


def test_fuzz_parser_raises_only_its_own_errors() -> None:
    rng = random.Random(20261125)
    corpus = [PROTOCOLINFO, ADD_ONION, CONFIG_TEXT, GETINFO, UPLOADED, UPLOAD, FAILED]
    for _ in range(3000):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            else:
                del data[pos : pos + rng.randint(1, 8)]
        try:
            for reply in tc.ReplyParser().receive_data(bytes(data)):
                for parse_reply in (tc.parse_protocolinfo, tc.parse_add_onion, tc.parse_getinfo, tc.parse_hs_desc):
                    with contextlib.suppress(P2PChatError, ValueError):
                        parse_reply(reply)
        except P2PChatError:
            pass
