"""Naming a source by what is safe to show: never its user info, path parameters, query or
fragment, whatever characters they hold."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from focusmon.source import Scrubber, redact, safe_name

# Anything a password may hold, but the characters that end an authority for FFmpeg too.
SECRET = st.text(
    alphabet=string.printable.replace("/", "")
    .replace("?", "")
    .replace("#", "")
    .replace("\x0b", "")
    .replace("\x0c", ""),
    min_size=6,
    max_size=20,
).filter(lambda s: s.strip() == s and "***" not in s)
MARK = "Zq"  # every secret carries it, so that it is told apart from the rest of the URL


@settings(max_examples=300, deadline=None)
@given(password=SECRET, key=st.from_regex(r"[a-z%0-9_]{1,12}", fullmatch=True), value=SECRET)
def test_no_secret_survives_the_safe_name(password, key, value):
    password, value = MARK + password, MARK + value
    urls = [
        f"rtsp://admin:{password}@cam.local:554/live/1",
        f"http://cam.local/live.ts?{key}={value}",
        f"http://cam.local/live.ts?a=1&{key}={value}",
        f"rtsp://cam.local/live;{key}={value}/main",
        f"http://cam.local/live.ts#{key}={value}",
    ]
    for url in urls:
        name = safe_name(url)
        assert MARK not in name, (url, name)
        assert "cam.local" in name  # it still says which camera
        said = Scrubber([url])(f"error opening '{url}': refused")
        assert MARK not in said, said
    alone = Scrubber([urls[0]])(f"authentication failed for admin:{password} ({password})")
    assert MARK not in alone, alone  # a password FFmpeg quotes alone


def test_what_a_name_shows():
    url = "rtsp://admin:p'a ss@cam:554/live;auth=x/main?token=abc&ch=1&sub=0#t=2"
    assert safe_name(url) == "rtsp://***@cam:554/live;***/main?***#***"
    assert safe_name(url, ["ch", "sub"]) == "rtsp://***@cam:554/live;***/main?***&ch=1&sub=0#***"
    assert safe_name("rtsp://cam/x?ch=1", ["ch"]) == "rtsp://cam/x?ch=1"  # nothing hidden
    assert safe_name("rtsp://cam/x?ch=a%20b", ["ch"]) == "rtsp://cam/x?***"  # not a plain value
    for plain in (
        "/dev/video0",
        "demo",
        "clip.mp4",
        "udp://127.0.0.1:5000",
        "rtsp://[::1]:8554/c",
    ):
        assert safe_name(plain) == plain
    assert safe_name("rtsp://u:p@h:notaport/x") == "rtsp://***@***/x"  # not a host: hidden


def test_free_text_is_redacted_where_urls_can_be_told_apart():
    text = "cannot open rtsp://admin:hunter2@cam/live?token=abc, nor http://x/y"
    assert redact(text) == "cannot open rtsp://***@cam/live?*** nor http://x/y"  # (its comma too)
