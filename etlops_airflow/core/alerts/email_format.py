"""A notification as an e-mail: a one-line subject, an HTML part and a plain-text part.

Plain Python (no Airflow). Every string of a :class:`MessageView` may come from a user (rule
names, descriptions, label values), so the HTML part escapes each one with :func:`html.escape`
and links only to http(s) URLs; the subject is one bounded line whatever the rule name holds.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from urllib.parse import urlsplit

from etlops_airflow.core.alerts.views import AlertView, MessageView

__all__ = ["MAX_ALERTS_PER_SECTION", "MAX_SUBJECT_LENGTH", "render_email", "render_subject"]

MAX_SUBJECT_LENGTH = 200
MAX_ALERTS_PER_SECTION = 50
"""A huge group still makes a readable mail: the rest is counted, not listed."""
_MAX_DESCRIPTION = 4000
_MAX_FIELD = 500

# The engine's own title may already carry the "[FIRING:2] " tag: the subject sets its own.
_STATUS_TAG = re.compile(r"^\s*\[(?:FIRING|RESOLVED)(?::\d+)?\]\s*", re.IGNORECASE)
_SAFE_URL = re.compile(r"https?://[^\s<>\"'`\\]+", re.IGNORECASE)

# Colours by known severity; anything else is grey (a value never reaches a style attribute).
_SEVERITY_COLOURS = {
    "critical": "#b00020",
    "high": "#d9480f",
    "medium": "#e67700",
    "low": "#1c7ed6",
    "info": "#495057",
}
_GREY = "#495057"
_TH = "text-align:left;vertical-align:top;padding:4px 12px 4px 0;color:#495057;white-space:nowrap"
_TD = "vertical-align:top;padding:4px 0"


def render_email(view: MessageView) -> tuple[str, str, str]:
    """``(subject, html, text)`` for one notification."""
    subject = render_subject(view)
    return subject, _render_html(view, subject), _render_text(view, subject)


def render_subject(view: MessageView) -> str:
    """``[FIRING:2] high: Orders pipeline failing``: one line, at most ``MAX_SUBJECT_LENGTH``."""
    if view.firing:
        tag = f"FIRING:{len(view.firing)}"
    elif view.resolved:
        tag = f"RESOLVED:{len(view.resolved)}"
    else:
        tag = "FIRING:0"
    title = _one_line(_STATUS_TAG.sub("", view.title)) or "alert"
    return _shorten(_one_line(f"[{tag}] {view.worst_severity}: {title}"), MAX_SUBJECT_LENGTH)


# --- shared helpers ---------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """Every run of whitespace or control characters (CR, LF, U+2028, bidi marks …) as one space."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in str(text)).split())


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _safe_url(url: object) -> str | None:
    """``url`` when it is a plain http(s) URL with a host, else ``None`` (never a javascript: link)."""
    if not isinstance(url, str) or not _SAFE_URL.fullmatch(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def _value(value: float | None) -> str:
    if value is None:
        return "no data"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError, TypeError):
        return str(epoch)


def _state(alert: AlertView) -> str:
    state = alert.state
    if alert.state == "resolved" and (at := _time(alert.resolved_at)):
        state += f" at {at}"
    elif (since := _time(alert.active_since)) is not None:
        state += f" since {since}"
    return state


def _labels(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(_shorten(str(k), _MAX_FIELD), _shorten(str(v), _MAX_FIELD)) for k, v in sorted(labels.items())]


def _links(alert: AlertView) -> list[tuple[str, str | None]]:
    """(name, URL or None when it is not an http(s) URL), the runbook last."""
    found = [(_shorten(_one_line(name), 100) or "link", _safe_url(url)) for name, url in alert.links.items()]
    if alert.runbook_url is not None:
        found.append(("Runbook", _safe_url(alert.runbook_url)))
    return found


def _sections(view: MessageView) -> Iterable[tuple[str, Sequence[AlertView]]]:
    if view.firing:
        yield "Firing", view.firing
    if view.resolved:
        yield "Resolved", view.resolved


# --- HTML -------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _render_html(view: MessageView, subject: str) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{_e(subject)}</title></head>",
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#212529">',
        f'<h2 style="margin:0 0 8px 0">{_e(subject)}</h2>',
    ]
    if view.group_labels:
        out.append(f'<p style="margin:0 0 12px 0">Group: {_html_labels(view.group_labels)}</p>')
    for heading, alerts in _sections(view):
        out.append(f'<h3 style="margin:16px 0 8px 0">{heading} ({len(alerts)})</h3>')
        for alert in alerts[:MAX_ALERTS_PER_SECTION]:
            out.append(_html_alert(alert))
        if len(alerts) > MAX_ALERTS_PER_SECTION:
            out.append(f"<p>… and {len(alerts) - MAX_ALERTS_PER_SECTION} more.</p>")
    out.append(
        '<p style="margin-top:16px;color:#868e96;font-size:12px">'
        f"Notification: {_e(view.reason)} · {_e(view.idempotency_key)}</p>"
    )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"<code>{_e(k)}={_e(v)}</code>" for k, v in _labels(labels)) or "none"


def _html_alert(alert: AlertView) -> str:
    colour = _SEVERITY_COLOURS.get(alert.severity, _GREY)
    state = _e(_state(alert))
    if alert.acked_by:
        state += f" · acknowledged by {_e(_shorten(_one_line(alert.acked_by), _MAX_FIELD))}"
    rule = _e(_shorten(alert.title, _MAX_FIELD))
    if alert.rule_id != alert.title:
        rule += f' <span style="color:#868e96">({_e(_shorten(alert.rule_id, _MAX_FIELD))})</span>'
    rows = [
        ("Severity", f'<b style="color:{colour}">{_e(alert.severity)}</b>'),
        ("Rule", rule),
        ("State", state),
        ("Value", f"{_e(_value(alert.value))} (threshold: {_e(_shorten(alert.threshold, _MAX_FIELD))})"),
        ("Labels", _html_labels(alert.labels)),
    ]
    if alert.description:
        text = _e(_shorten(alert.description.strip(), _MAX_DESCRIPTION))
        rows.append(("Description", text.replace("\r\n", "\n").replace("\n", "<br>\n")))
    for name, url in _links(alert):
        if url is None:
            rows.append((_e(name), '<span style="color:#868e96">(not an http(s) URL, not shown)</span>'))
        else:
            rows.append((_e(name), f'<a href="{_e(url)}">{_e(_shorten(url, _MAX_FIELD))}</a>'))
    body = "\n".join(f'<tr><th style="{_TH}">{k}</th><td style="{_TD}">{v}</td></tr>' for k, v in rows)
    return (
        f'<table style="border-collapse:collapse;border-left:4px solid {colour};'
        'padding-left:8px;margin:0 0 12px 0" cellpadding="0" cellspacing="0">\n'
        f"{body}\n</table>"
    )


# --- plain text -------------------------------------------------------------------------------


def _render_text(view: MessageView, subject: str) -> str:
    out = [subject, ""]
    if view.group_labels:
        out += [f"Group: {_text_labels(view.group_labels)}", ""]
    for heading, alerts in _sections(view):
        title = f"{heading.upper()} ({len(alerts)})"
        out += [title, "=" * len(title), ""]
        for number, alert in enumerate(alerts[:MAX_ALERTS_PER_SECTION], start=1):
            out += _text_alert(number, alert) + [""]
        if len(alerts) > MAX_ALERTS_PER_SECTION:
            out += [f"… and {len(alerts) - MAX_ALERTS_PER_SECTION} more.", ""]
    out += ["-- ", f"Notification: {_one_line(view.reason)} · {_one_line(view.idempotency_key)}"]
    return "\n".join(out) + "\n"


def _text_labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{_one_line(k)}={_one_line(v)}" for k, v in _labels(labels)) or "none"


def _text_alert(number: int, alert: AlertView) -> list[str]:
    state = _state(alert)
    if alert.acked_by:
        state += f", acknowledged by {_shorten(_one_line(alert.acked_by), _MAX_FIELD)}"
    rule = _one_line(_shorten(alert.title, _MAX_FIELD))
    if alert.rule_id != alert.title:
        rule += f" ({_one_line(_shorten(alert.rule_id, _MAX_FIELD))})"
    rows = [  # severity and rule head the entry
        ("State", state),
        ("Value", f"{_value(alert.value)} (threshold: {_one_line(_shorten(alert.threshold, _MAX_FIELD))})"),
        ("Labels", _text_labels(alert.labels)),
    ]
    if alert.description:
        rows.append(("Description", _shorten(alert.description.strip(), _MAX_DESCRIPTION)))
    for name, url in _links(alert):
        rows.append((name, url if url is not None else "(not an http(s) URL, not shown)"))
    width = max(len(k) for k, _ in rows) + 2
    lines = [f"{number}. [{_one_line(alert.severity).upper()}] {rule}"]
    for key, value in rows:
        first, *rest = value.replace("\r\n", "\n").split("\n") or [""]
        lines.append(f"   {(key + ':').ljust(width)}{first}")
        lines += [f"   {' ' * width}{line}" for line in rest]
    return lines
