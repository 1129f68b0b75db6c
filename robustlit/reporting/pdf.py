"""PDF export (fpdf2) of the same content as the HTML: a cover page, then each section on its own pages."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from robustlit.reporting.sections import ReportContent, Section, Table

FONT = "DejaVu"
_FILLS = {"better": (207, 230, 245), "worse": (249, 217, 192)}
_CHART_MAX_HEIGHT_MM = 95.0
_TABLE_FONT = 7.0
_LINE_MM = 3.2
_PAD = 0.8
_MAX_COLUMN_MM = 70.0


def _font_files() -> dict[str, Path]:
    """DejaVu Sans from matplotlib's data folder: a Unicode font (ε, Δ, ▲) that ships with a dependency."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return {"": folder / "DejaVuSans.ttf", "B": folder / "DejaVuSans-Bold.ttf"}


class _Document:
    """An fpdf2 document with the report's fonts, headings and table style."""

    def __init__(self, content: ReportContent) -> None:
        from fpdf import FPDF

        self.pdf = FPDF(orientation="landscape", format="A4")
        self.pdf.set_auto_page_break(auto=True, margin=12)
        self.pdf.set_margins(12, 12, 12)
        for style, path in _font_files().items():
            self.pdf.add_font(FONT, style, str(path))
        self.pdf.set_title(content.title)
        self.pdf.set_creator("robustlit")
        self.pdf.set_lang("en")

    @property
    def width(self) -> float:
        return self.pdf.epw

    def heading(self, text: str, size: float) -> None:
        self.pdf.set_font(FONT, "B", size)
        self.pdf.multi_cell(0, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(1.5)

    def paragraph(self, text: str, size: float = 9.5, fill: tuple[int, int, int] | None = None) -> None:
        self.pdf.set_font(FONT, "", size)
        if fill is not None:
            self.pdf.set_fill_color(*fill)
        self.pdf.multi_cell(0, size * 0.5, text, fill=fill is not None, align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(1.5)

    def chart(self, png: bytes, size: tuple[int, int], alt: str, title: str) -> None:
        width_px, height_px = size
        width = min(self.width, width_px * 0.26)  # 100 dpi → 0.254 mm per pixel
        height = width * height_px / width_px
        if height > _CHART_MAX_HEIGHT_MM:
            width, height = width * _CHART_MAX_HEIGHT_MM / height, _CHART_MAX_HEIGHT_MM
        if self.pdf.get_y() + height + 6 > self.pdf.page_break_trigger:
            self.pdf.add_page()
        self.pdf.image(io.BytesIO(png), w=width, h=height, alt_text=alt, title=title)
        self.pdf.set_font(FONT, "", 7.5)
        self.pdf.multi_cell(0, 3.5, title, align="L", new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(2)

    def table(self, table: Table) -> None:
        """Draw the table with plain cells (fpdf2's ``table()`` costs ~1 ms per cell; reports have ~10⁴ cells)."""
        pdf = self.pdf
        if pdf.get_y() + 20 > pdf.page_break_trigger:
            pdf.add_page()
        pdf.set_font(FONT, "B", 8.5)
        pdf.multi_cell(0, 4.5, f"{table.title} ({table.filename})", align="L", new_x="LMARGIN", new_y="NEXT")
        texts = [[table.text(r, c) for c in range(len(row))] for r, row in enumerate(table.rows)]
        widths = self._widths(table.columns, texts)
        self._row(table.columns, widths, bold=True)
        for r, (row, values) in enumerate(zip(texts, table.rows, strict=True)):
            if self._row(row, widths, fills=[_FILLS.get(table.verdict(r, c) or "") for c in range(len(row))],
                         right=[isinstance(v, int | float) for v in values]):
                self._row(table.columns, widths, bold=True)  # a new page began: repeat the header
                self._row(row, widths, fills=[_FILLS.get(table.verdict(r, c) or "") for c in range(len(row))],
                          right=[isinstance(v, int | float) for v in values], check=False)
        pdf.ln(3)

    def _widths(self, columns: list[str], texts: list[list[str]]) -> list[float]:
        pdf = self.pdf
        pdf.set_font(FONT, "B", _TABLE_FONT)
        natural = [pdf.get_string_width(column) + 2 * _PAD for column in columns]
        pdf.set_font(FONT, "", _TABLE_FONT)
        for row in texts[:200]:
            natural = [max(width, pdf.get_string_width(text) + 2 * _PAD) for width, text in zip(natural, row,
                                                                                                strict=True)]
        natural = [min(width, _MAX_COLUMN_MM) for width in natural]
        return [width * self.width / sum(natural) for width in natural]

    def _lines(self, text: str, width: float) -> list[str]:
        """``text`` broken into lines that fit ``width``: after separators, or inside long tokens (hashes)."""
        pdf = self.pdf
        if pdf.get_string_width(text) <= width:
            return [text]
        lines, current = [], ""
        for word in re.split(r"(?<=[\s/_.,=:-])", text):
            if pdf.get_string_width(current + word) <= width:
                current += word
                continue
            if current:
                lines.append(current)
            while pdf.get_string_width(word) > width:
                cut = max(1, int(len(word) * width / pdf.get_string_width(word)))
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        return [*lines, current] if current else lines

    def _row(self, cells: list[str], widths: list[float], bold: bool = False,
             fills: list[tuple[int, int, int] | None] | None = None, right: list[bool] | None = None,
             check: bool = True) -> bool:
        """Draw one row; returns ``True`` without drawing when it does not fit and a page was added."""
        pdf = self.pdf
        pdf.set_font(FONT, "B" if bold else "", _TABLE_FONT)
        lines = [self._lines(text, width - 2 * _PAD) for text, width in zip(cells, widths, strict=True)]
        height = max(len(cell) for cell in lines) * _LINE_MM + 2 * _PAD
        y = pdf.get_y()
        if check and y + height > pdf.page_break_trigger:
            pdf.add_page()
            return True
        x = pdf.l_margin
        for index, (cell, width) in enumerate(zip(lines, widths, strict=True)):
            fill = (242, 242, 242) if bold else (fills[index] if fills else None)
            if fill is not None:
                pdf.set_fill_color(*fill)
            pdf.rect(x, y, width, height, style="DF" if fill is not None else "D")
            for number, line in enumerate(cell):
                pdf.set_xy(x + _PAD, y + _PAD + number * _LINE_MM)
                pdf.cell(width - 2 * _PAD, _LINE_MM, line, align="R" if right and right[index] else "L")
            x += width
        pdf.set_xy(pdf.l_margin, y + height)
        return False

    def section(self, section: Section) -> None:
        self.pdf.add_page()
        self.heading(section.title, 15)
        self.paragraph(f"What this means: {section.meaning}", fill=(238, 245, 251))
        for note in section.notes:
            self.paragraph(note, fill=(253, 241, 228))
        for chart in section.charts:
            self.chart(chart.png, chart.size, chart.alt, chart.title)
        for table in section.tables:
            self.table(table)


def render_pdf(content: ReportContent) -> bytes:
    """The report as PDF bytes: a cover page (runs, omitted sections, contents), then one section per new page.

    Example:
        >>> data = render_pdf(build_content(load_runs(["runs/demo/baseline"])))  # doctest: +SKIP
        >>> data[:5]  # doctest: +SKIP
        b'%PDF-'
    """
    document = _Document(content)
    pdf = document.pdf
    pdf.add_page()
    document.heading(content.title, 18)
    runs = ", ".join(f"{run.label}{' (baseline)' if run.label == content.baseline else ''}" for run in content.runs)
    document.paragraph(f"Generated {content.generated_at}. Runs: {runs}.")
    if content.omitted_note:
        document.paragraph(content.omitted_note, fill=(253, 241, 228))
    document.paragraph("Sections: " + "; ".join(
        f"{index}. {section.title}" for index, section in enumerate(content.sections, start=1)))
    document.paragraph("Every table is also exported as CSV under the file name shown after its title.", size=8)
    for section in content.sections:
        document.section(section)
    return bytes(pdf.output())


def write_pdf(content: ReportContent, path: str | os.PathLike[str]) -> Path:
    """Render :func:`render_pdf` into ``path`` and return it.

    Example:
        >>> write_pdf(content, "out/robustness_report.pdf")  # doctest: +SKIP
        PosixPath('out/robustness_report.pdf')
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render_pdf(content))
    return target
