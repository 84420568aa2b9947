"""BENCHMARKS.md is refreshed one section at a time: the others are kept as they were."""

from __future__ import annotations

from bench.__main__ import read_sections, render


def test_a_refreshed_section_replaces_only_itself() -> None:
    doc = render(
        {
            "ingest": "## ingest (full)\n\n| a | b |\n\ningest: 1.57x\n",
            "exodus": "## exodus\n\nday one\n\n## exodus\n\nchaos\n",
        }
    )
    sections = read_sections(doc)
    assert set(sections) == {"ingest", "exodus"}
    assert "day one" in sections["exodus"] and "chaos" in sections["exodus"]
    again = render({**sections, "ingest": "## ingest (quick)\n\ningest: 1.60x\n"})
    assert "1.60x" in again and "1.57x" not in again
    assert again.index("## ingest") < again.index("## exodus") < again.index("chaos")
    assert read_sections(again)["exodus"] == sections["exodus"]
