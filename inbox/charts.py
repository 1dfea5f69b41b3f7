"""Small server-rendered SVG charts for the Reports page (docs/product.md §7.11): no script, no
library, nothing from a CDN. They scale to their container through the viewBox; every number
is also in a table beside the chart, which is what screen readers are pointed at."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# Bootstrap's palette, so the charts match the rest of the page.
COLOURS = ["#0d6efd", "#198754", "#6f42c1", "#fd7e14", "#dc3545"]


def _n(value: float) -> str:
    """A coordinate, short: 12.5, 3, 0.25."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _frame(width: int, height: int, label: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="relay-chart" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        "<title>{}</title>{}</svg>",
        width,
        height,
        label,
        label,
        body,
    )


def _nice_max(value: int) -> int:
    """A round top for the axis: 1, 2, 5, 10, 20, 50..."""
    top, steps = 1, (2, 2.5, 2)
    i = 0
    while top < value:
        top = int(top * steps[i % 3])
        i += 1
    return top


def grouped_bars(
    *,
    label: str,
    categories: list[str],
    series: list[tuple[str, list[int]]],
    width: int = 720,
    height: int = 240,
    tick_every: int = 1,
) -> SafeString:
    """Bars per category, one per series side by side, with a y axis and a legend."""
    font = max(11, round(11 * width / 900))  # a wide chart is drawn smaller: larger type
    left, right, top, bottom = 3 * font, 8, 2 * font + 4, 2 * font + 6
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max([max(values, default=0) for _, values in series] + [1]))
    slot = plot_w / max(len(categories), 1)
    bar = max(slot * 0.8 / max(len(series), 1), 0.5)
    parts = []
    # Gridlines at whole numbers only: 0, the top, and the middle when it is whole.
    for value in sorted({0, peak, peak // 2 if peak % 2 == 0 else 0}):
        fraction = value / peak
        y = top + plot_h * (1 - fraction)
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#dee2e6"/>'
                '<text x="{}" y="{}" font-size="{}" text-anchor="end" fill="#6c757d">{}</text>',
                left,
                width - right,
                _n(y),
                _n(y),
                left - 4,
                _n(y + font / 3),
                font,
                value,
            )
        )
    for s, (_name, values) in enumerate(series):
        for i, value in enumerate(values):
            if not value:
                continue
            h = plot_h * value / peak
            x = left + i * slot + slot * 0.1 + s * bar
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{}: {}</title></rect>",
                    _n(x),
                    _n(top + plot_h - h),
                    _n(bar),
                    _n(h),
                    COLOURS[s % len(COLOURS)],
                    categories[i],
                    value,
                )
            )
    for i, name in enumerate(categories):
        if i % tick_every == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" font-size="{}" text-anchor="middle" '
                    'fill="#6c757d">{}</text>',
                    _n(left + i * slot + slot / 2),
                    height - font,
                    font,
                    name,
                )
            )
    if len(series) > 1:
        x = left
        for s, (name, _values) in enumerate(series):
            parts.append(
                format_html(
                    '<rect x="{}" y="4" width="{}" height="{}" fill="{}"/>'
                    '<text x="{}" y="{}" font-size="{}" fill="#212529">{}</text>',
                    x,
                    font,
                    font,
                    COLOURS[s % len(COLOURS)],
                    x + font + 4,
                    font + 2,
                    font,
                    name,
                )
            )
            x += font + 4 + round(0.6 * font * len(name)) + 2 * font
    return _frame(width, height, label, mark_safe("".join(parts)))


def heat_grid(*, label: str, rows: list[str], grid: list[list[int]]) -> SafeString:
    """A rows x 24 grid of cells, darker for more (the busiest hours by weekday)."""
    left, top, cell = 36, 18, 26
    width, height = left + 24 * cell + 4, top + len(rows) * cell + 4
    peak = max([max(row, default=0) for row in grid] + [1])
    cells = []
    for r, name in enumerate(rows):
        cells.append(
            format_html(
                '<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#6c757d">{}</text>',
                left - 4,
                _n(top + r * cell + cell / 2 + 4),
                name,
            )
        )
        for hour, value in enumerate(grid[r]):
            cells.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" rx="3" fill="{}" '
                    'fill-opacity="{}"><title>{} {}:00: {}</title></rect>',
                    left + hour * cell + 1,
                    top + r * cell + 1,
                    cell - 2,
                    cell - 2,
                    COLOURS[0] if value else "#e9ecef",
                    _n(0.15 + 0.85 * value / peak if value else 1),
                    name,
                    f"{hour:02d}",
                    value,
                )
            )
    hours = format_html_join(
        "",
        '<text x="{}" y="12" font-size="11" text-anchor="middle" fill="#6c757d">{}</text>',
        ((_n(left + h * cell + cell / 2), f"{h:02d}") for h in range(0, 24, 3)),
    )
    return _frame(width, height, label, mark_safe(hours + "".join(cells)))
