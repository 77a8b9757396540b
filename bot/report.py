"""The monthly 《效果跟踪表》: the programme's figures (models/figures.py) as target, actual and
deviation with a 12-month trend chart each, rendered as one self-contained HTML page and a CSV
of every figure; and the charts the console's dashboard shows.

Charts are drawn on the server by pygal as SVG and embedded as ``data:`` images: nothing is
loaded from elsewhere, the page works offline, and the console's Content-Security-Policy
(no inline style or script) needs no exception. Files are written to a temporary name in the
target folder and renamed, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
import pygal
from pygal.style import Style

from messages import console_copy as names
from messages import service_copy
from models.figures import FIGURES, HOLDOUT, Figure, MonthReport, figure_rows, lift, value_of
from models.rules import ProgrammeRules

TEMPLATES = Path(__file__).parent / "templates"
CHART_STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#1f2329",
    foreground_strong="#1f2329",
    foreground_subtle="#c9cdd4",
    font_family='-apple-system,"PingFang SC","Microsoft YaHei",sans-serif',
    colors=("#3370ff", "#f54a45"),
    label_font_size=11,
    legend_font_size=11,
    guide_stroke_color="#e5e6eb",
    major_guide_stroke_color="#c9cdd4",
    guide_stroke_dasharray="2,3",
    major_guide_stroke_dasharray="2,3",
    stroke_width=2,
)


class BadMonth(ValueError):
    """The month asked for is not a month (``ended`` False), or has not ended yet."""

    def __init__(self, message: str, *, ended: bool) -> None:
        super().__init__(message)
        self.ended = ended


def parse_month(text: str, today: date, *, allow_current: bool = False) -> date:
    """``YYYY-MM`` as the month's first day. A month not yet ended is refused (a report of
    part of a month would be judged against whole-month targets), unless ``allow_current``
    (the dashboard shows the month so far)."""
    try:
        year, month = (int(part) for part in text.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise BadMonth(f"{text!r} is not a month (YYYY-MM, e.g. 2026-11)", ended=False) from None
    current = today.replace(day=1)
    if first > current or (first == current and not allow_current):
        raise BadMonth(f"{first:%Y-%m} has not ended yet (today is {today:%Y-%m-%d})", ended=True)
    return first


def format_value(unit: str, value: float | None) -> str:
    """A figure's value as a marketer reads it: 66.7%, ¥150.00, 25.0, 1,234."""
    if value is None:
        return "—"
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "fen":
        return f"¥{value / 100:,.2f}"
    if unit == "score":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def format_deviation(figure: Figure) -> str:
    """Actual minus target in the figure's unit (percentage points for rates)."""
    deviation = figure.deviation
    if deviation is None:
        return "—"
    sign = "+" if deviation >= 0 else "−"
    size = abs(deviation)
    if figure.unit == "percent":
        return f"{sign}{size:.1f} 个百分点"
    if figure.unit == "fen":
        return f"{sign}¥{size / 100:,.2f}"
    return f"{sign}{size:,.1f}"


def trend_chart(figure: Figure) -> str:
    """The figure's 12-month trend (and its target as a dashed line) as an SVG document."""
    points = figure.trend()
    scale = 0.01 if figure.unit == "fen" else 1.0
    chart = pygal.Line(
        width=460,
        height=240,
        explicit_size=True,
        js=[],
        disable_xml_declaration=True,
        style=CHART_STYLE,
        show_legend=figure.target is not None,
        legend_at_bottom=True,
        legend_box_size=10,
        margin=8,
        x_label_rotation=0,
        truncate_label=-1,
        # A month with nothing to measure is a gap, not a line drawn across it.
        allow_interruptions=True,
        include_x_axis=figure.unit != "score",
        value_formatter=lambda v: format_value(figure.unit, None if v is None else v / scale),
        no_data_text="暂无数据",
    )
    chart.x_labels = [month[2:].replace("-", "/") for month, _ in points]
    chart.add("实际", [None if v is None else v * scale for _, v in points])
    if figure.target is not None:
        chart.add(
            "目标",
            [figure.target * scale] * len(points),
            show_dots=False,
            stroke_style={"dasharray": "6,4", "width": 1.5},
        )
    tree = chart.render_tree()
    # pygal always writes its tooltip configuration as a script; an image runs none.
    for parent in tree.iter():
        for child in [c for c in parent if c.tag == "script"]:
            parent.remove(child)
    return ET.tostring(tree, encoding="unicode")


def data_uri(svg: str) -> str:
    """An SVG document as a ``data:`` URI for an <img>."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


@dataclass(frozen=True, slots=True)
class FigureView:
    """One row of the 《效果跟踪表》, with its chart."""

    code: str
    name: str
    unit: str
    target: str
    actual: str
    deviation: str
    met: bool | None
    chart: str  # data: URI
    by_tier: list[tuple[str, str]]
    by_segment: list[tuple[str, str]]
    extra: list[tuple[str, str]]


def figure_views(report: MonthReport, rules: ProgrammeRules) -> list[FigureView]:
    """Every figure, in the order of models.figures.FIGURES, ready for a template."""
    tiers = {tier.code: tier.name for tier in rules.tiers}
    views = []
    for definition in FIGURES:
        figure = report.figures[definition.code]
        unit = figure.unit
        views.append(
            FigureView(
                code=figure.code,
                name=names.FIGURE_NAMES.get(figure.code, figure.code),
                unit=unit,
                target=_target_text(figure),
                actual=format_value(unit, figure.actual),
                deviation=format_deviation(figure),
                met=figure.met,
                chart=data_uri(trend_chart(figure)),
                by_tier=_groups(figure.by_tier, unit, tiers, [t.code for t in rules.tiers]),
                by_segment=_groups(
                    figure.by_segment, unit, names.SEGMENT_NAMES, list(names.SEGMENT_NAMES)
                ),
                extra=_extra(figure, rules),
            )
        )
    return views


def _target_text(figure: Figure) -> str:
    rule = figure.target_rule
    if rule is None:
        return names.NO_TARGET
    shown = format_value(figure.unit, figure.target)
    if rule.change_percent is not None:
        change = f"同比{'+' if rule.change_percent >= 0 else ''}{rule.change_percent:g}%"
        return (
            f"{shown}（{change}）" if figure.target is not None else f"{change}（去年同月无数据）"
        )
    return f"≤ {shown}" if rule.at_most is not None else f"≥ {shown}"


def _groups(
    groups: dict[str, tuple[float, float]], unit: Any, labels: dict[str, str], order: list[str]
) -> list[tuple[str, str]]:
    known = [code for code in order if code in groups]
    rest = sorted(code for code in groups if code not in order)
    return [
        (labels.get(code, code), format_value(unit, value_of(unit, groups[code])))
        for code in known + rest
    ]


def _extra(figure: Figure, rules: ProgrammeRules) -> list[tuple[str, str]]:
    shown = []
    for key, pair in sorted(figure.extra.items()):
        kind, _, name = key.partition(":")
        if kind == "kind":
            coupon = rules.coupon_kind(name)
            label = f"券种：{coupon.name if coupon else name}"
        elif kind == "reason":
            label = f"发放原因：{name}"
        elif kind == "category":
            label = f"工单类别：{service_copy.CASE_CATEGORIES.get(name, name)}"
        else:
            label = names.CONTACTED if key == "contacted" else names.HOLDOUT
        value = format_value(figure.unit, value_of(figure.unit, pair))
        shown.append((label, f"{value}（{pair[0]:.0f}/{pair[1]:.0f}）"))
    if figure.extra.get(HOLDOUT) and (relative := lift(figure)) is not None:
        shown.append(("相对对照组提升", f"{relative * 100:+.1f}%"))
    return shown


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )


def render_html(report: MonthReport, rules: ProgrammeRules, generated_at: datetime) -> str:
    """The 《效果跟踪表》 as one HTML page: styles inline, charts as data: images."""
    return (
        _environment()
        .get_template("monthly_report.html")
        .render(
            brand=rules.brand_name,
            month=report.month,
            figures=figure_views(report, rules),
            generated_at=generated_at.astimezone(rules.zone),
        )
    )


CSV_FIELDS = (
    "month",
    "figure",
    "name",
    "unit",
    "group",
    "numerator",
    "denominator",
    "value",
    "target",
    "deviation",
)


def render_csv(report: MonthReport) -> str:
    """Every figure, month and group as CSV rows (UTF-8 with a BOM, so Excel reads Chinese)."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in figure_rows(report):
        row["name"] = names.FIGURE_NAMES.get(row["figure"], row["figure"])
        for key in ("value", "target", "deviation"):
            if row[key] is not None:
                row[key] = round(row[key], 4)
        writer.writerow(row)
    return out.getvalue()


def report_names(month: date) -> tuple[str, str]:
    """The report's file names for a month."""
    return f"report-{month:%Y-%m}.html", f"report-{month:%Y-%m}.csv"


def write_report(
    report: MonthReport, rules: ProgrammeRules, folder: Path, generated_at: datetime
) -> tuple[Path, Path]:
    """Write the HTML and CSV into ``folder`` (created if missing): both are written in full to
    temporary names beside them, then renamed into place, so a failure (a full or read-only
    disk) leaves no partial file."""
    html_name, csv_name = report_names(report.month)
    contents = {
        html_name: render_html(report, rules, generated_at),
        csv_name: render_csv(report),
    }
    folder.mkdir(parents=True, exist_ok=True)
    temporaries: list[str] = []
    try:
        for name, text in contents.items():
            handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
            temporaries.append(temporary)
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
        for temporary, name in zip(temporaries, contents, strict=True):
            os.replace(temporary, folder / name)
    finally:
        for temporary in temporaries:
            Path(temporary).unlink(missing_ok=True)
    return folder / html_name, folder / csv_name
