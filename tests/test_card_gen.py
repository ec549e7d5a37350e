"""hdl/rgw_card_pkg.sv and the register tables of docs/card.md are generated from regmap.py."""

from __future__ import annotations

from riskgw.card import regmap, regmap_gen


def test_package_carries_every_register() -> None:
    text = regmap_gen.render_card_package()
    for b in regmap.BLOCKS:
        assert f"{b.type.name}_BASE = 16'h{b.base:04x};" in text
        for r in b.regs[2:]:
            assert f"ADDR_{b.type.name}_{r.name} = 16'h{b.base + r.offset:04x};" in text
    for c in regmap.Counter:
        assert f"CNT_{c.name} = {int(c)};" in text
    assert f"CARD_MAGIC = 32'h{regmap.CARD_MAGIC:08x};" in text


def test_doc_region_is_replaced_and_prose_kept() -> None:
    old = f"# Card\n\nprose before\n\n{regmap_gen.BEGIN}\nstale table\n{regmap_gen.END}\n\nprose after\n"
    new = regmap_gen.render_card_doc(old)
    assert new.startswith("# Card\n\nprose before\n\n") and new.endswith("\n\nprose after\n")
    assert "stale table" not in new
    assert "| 0x0108 | CONTROL | 1 | rw |" in new
    assert regmap_gen.render_card_doc(new) == new


def test_doc_without_region_gets_one() -> None:
    new = regmap_gen.render_card_doc("# Card\n")
    assert regmap_gen.BEGIN in new and regmap_gen.END in new
