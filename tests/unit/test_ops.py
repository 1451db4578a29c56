"""The op records Python packs and lua/apply_events.lua unpacks agree."""

from __future__ import annotations

import re

from segserver.profile.ops import FLAG_WHEN_GAP, RECORD, Op, Opcode, pack_ops, unpack_ops
from segserver.resources import shipped_dir


def test_opcodes_match_the_lua_header() -> None:
    source = (shipped_dir("lua") / "apply_events.lua").read_text()
    listed = dict(re.findall(r"(\d+) ([A-Z_]+)", source.split("Opcodes:")[1].split("Returns")[0]))
    assert {int(k): v for k, v in listed.items()} == {op.value: op.name for op in Opcode}
    assert f"local RECORD_LEN = {RECORD.size}" in source
    assert "local RECORD = '<BBI4dd'" in source


def test_pack_roundtrip() -> None:
    ops = [Op(Opcode.ADD, 40, 1.0), Op(Opcode.WINDOW_ADD, 400, 20000.0, 2.5, 1)]
    assert unpack_ops(pack_ops(ops)) == ops
    assert len(pack_ops(ops)) == 2 * RECORD.size


def test_check_gap_counts_the_gap_only_records_after_it() -> None:
    gap = Op(Opcode.CHECK_GAP, 8, 100.0, 1800.0)
    guarded = Op(Opcode.ADD, 16, 1.0, 0.0, FLAG_WHEN_GAP)
    ops = [gap, guarded, guarded, Op(Opcode.MAX, 8, 100.0), guarded]
    records = list(RECORD.iter_unpack(pack_ops(ops)))
    assert [flags for _, flags, *_ in records] == [2 * 2, 1, 1, 0, 1]
    assert unpack_ops(pack_ops(ops)) == ops
