"""Hand-written byte fragments shared by the golden and response tests."""

from __future__ import annotations

from zkwarden.types import Stat

PATH_A = "00000002 2f61"  # ustring "/a": length 2, then "/a"
PATH_B = "00000002 2f62"  # ustring "/b"
# vector<ACL> [ACL(perms=ALL, Id("world", "anyone"))]
OPEN_ACL = (
    "00000001"  # vector count 1
    " 0000001f"  # ACL.perms = 31 (ALL)
    " 00000005 776f726c64"  # Id.scheme = "world"
    " 00000006 616e796f6e65"  # Id.id = "anyone"
)
MULTI_END = "ffffffff 01 ffffffff"  # MultiHeader{type=-1, done=true, err=-1}

STAT = Stat(
    czxid=0x0000000100000002,
    mzxid=0x0000000100000003,
    ctime=0x0000018B8F0D1E00,
    mtime=0x0000018B8F0D2000,
    version=5,
    cversion=-2,
    aversion=7,
    ephemeral_owner=0x0100000434530000,
    data_length=3,
    num_children=0,
    pzxid=0x0000000100000004,
)
STAT_HEX = (
    "0000000100000002"  # czxid
    " 0000000100000003"  # mzxid
    " 0000018b8f0d1e00"  # ctime
    " 0000018b8f0d2000"  # mtime
    " 00000005"  # version
    " fffffffe"  # cversion (-2)
    " 00000007"  # aversion
    " 0100000434530000"  # ephemeralOwner
    " 00000003"  # dataLength
    " 00000000"  # numChildren
    " 0000000100000004"  # pzxid
)

