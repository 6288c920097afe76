"""Charts as inline SVG, drawn on the server: pure functions from figures to markup.

No script and no `style` attribute (the Content-Security-Policy forbids inline styles):
colours are SVG presentation attributes (`fill`), text sizes come from `dashboard.css`
classes. Each chart has a `<title>` and an `aria-label` saying what it shows; the page
puts the same figures in a table next to it for screen readers and for exact values.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from markupsafe import Markup

# Colours with at least 3:1 contrast on white (WCAG non-text contrast).
INBOUND = "#1f5f99"
OUTBOUND = "#b35900"
SEGMENT_COLOURS = {
    "vip": "#2e7031",
    "active": "#1f5f99",
    "at_risk": "#b35900",
    "dormant": "#6b6b6b",
}


def _svg(width: int, height: int, label: str, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f"aria-label={quoteattr(label)}><title>{escape(label)}</title>"
    )
    return Markup(head + "".join(body) + "</svg>")


def weekly_bars(
    weeks: Sequence[tuple[str, int, int]],
    title: str,
    inbound_label: str,
    outbound_label: str,
) -> Markup:
    """Stacked bars, one per week (label, received, sent): received at the bottom."""
    width, height, top, bottom, left = 560, 220, 24, 40, 36
    plot = height - top - bottom
    peak = max((i + o for _, i, o in weeks), default=0) or 1
    step = (width - left - 8) / max(1, len(weeks))
    bar = max(4.0, step * 0.6)
    body = [
        f'<line x1="{left}" y1="{top + plot}" x2="{width - 4}" y2="{top + plot}" '
        'stroke="#555555" stroke-width="1"/>',
        f'<text class="chart-axis" x="{left - 4}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text class="chart-axis" x="{left - 4}" y="{top + plot}" text-anchor="end">0</text>',
        f'<rect x="{left}" y="4" width="10" height="10" fill="{INBOUND}"/>',
        f'<text class="chart-legend" x="{left + 14}" y="13">{escape(inbound_label)}</text>',
        f'<rect x="{left + 160}" y="4" width="10" height="10" fill="{OUTBOUND}"/>',
        f'<text class="chart-legend" x="{left + 174}" y="13">{escape(outbound_label)}</text>',
    ]
    for n, (label, received, sent) in enumerate(weeks):
        x = left + n * step + (step - bar) / 2
        h_in = plot * received / peak
        h_out = plot * sent / peak
        y_in = top + plot - h_in
        y_out = y_in - h_out
        tip_in = escape(f"{label}: {inbound_label} {received}")
        tip_out = escape(f"{label}: {outbound_label} {sent}")
        body.append(
            f'<rect x="{x:.1f}" y="{y_in:.1f}" width="{bar:.1f}" height="{h_in:.1f}" '
            f'fill="{INBOUND}"><title>{tip_in}</title></rect>'
        )
        body.append(
            f'<rect x="{x:.1f}" y="{y_out:.1f}" width="{bar:.1f}" height="{h_out:.1f}" '
            f'fill="{OUTBOUND}"><title>{tip_out}</title></rect>'
        )
        if received + sent:
            body.append(
                f'<text class="chart-value" x="{x + bar / 2:.1f}" y="{y_out - 3:.1f}" '
                f'text-anchor="middle">{received + sent}</text>'
            )
        short = escape(label.split("-")[-1])
        body.append(
            f'<text class="chart-axis" x="{x + bar / 2:.1f}" y="{top + plot + 16}" '
            f'text-anchor="middle">{short}</text>'
        )
    return _svg(width, height, title, body)


def segment_bar(segments: Sequence[tuple[str, str, int]], title: str) -> Markup:
    """One horizontal bar split by segment (key, label, count), with a legend below."""
    width, height, left, bar_width = 560, 90, 4, 552
    total = sum(c for _, _, c in segments)
    body: list[str] = []
    x = float(left)
    for key, label, count in segments:
        if not total or not count:
            continue
        w = bar_width * count / total
        colour = SEGMENT_COLOURS.get(key, "#6b6b6b")
        body.append(
            f'<rect x="{x:.1f}" y="8" width="{w:.1f}" height="28" fill="{colour}">'
            f"<title>{escape(f'{label}: {count}')}</title></rect>"
        )
        x += w
    if not total:
        body.append(f'<rect x="{left}" y="8" width="{bar_width}" height="28" fill="#e6e6e6"/>')
    for n, (key, label, count) in enumerate(segments):
        lx = left + n * 140
        colour = SEGMENT_COLOURS.get(key, "#6b6b6b")
        body.append(f'<rect x="{lx}" y="52" width="10" height="10" fill="{colour}"/>')
        body.append(
            f'<text class="chart-legend" x="{lx + 14}" y="61">{escape(f"{label} {count}")}</text>'
        )
    return _svg(width, height, title, body)
