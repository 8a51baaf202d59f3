"""A :class:`MessageView` as a Slack message: a plain-text fallback and Block Kit blocks.

Plain Python (no Slack SDK, no Airflow): the senders in ``etlops_airflow.notifications`` post
what this module returns.

Slack's limits are kept by construction, whatever the alerts hold:

* at most :data:`MAX_BLOCKS` blocks: a group with many alerts shows the first
  ``max_alerts`` (firing before resolved) and one "and N more alerts" line;
* a ``header`` holds at most :data:`HEADER_MAX` characters, a ``section`` or ``context``
  text at most :data:`SECTION_MAX` (counted after escaping, which is what Slack counts);
* there is always a top-level ``text`` (notifications, screen readers, old clients).

Every piece of user text (rule titles, labels, descriptions, acknowledging user, link labels)
is escaped for mrkdwn (``&``, ``<``, ``>``), so it can neither mention ``<!channel>`` nor
forge a link. ``plain_text`` objects (the header) are not parsed by Slack and carry the
text as it is. Links are only made for ``http``, ``https`` and ``mailto`` URLs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from etlops_airflow.core.alerts.views import AlertView, MessageView

HEADER_MAX = 150
SECTION_MAX = 3000
MAX_BLOCKS = 50
TEXT_MAX = 3000  # Slack accepts 40,000; a notification preview shows far less
DEFAULT_MAX_ALERTS = 20

SEVERITY_EMOJI: Mapping[str, str] = {
    "critical": ":red_circle:",
    "high": ":large_orange_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":large_blue_circle:",
    "info": ":information_source:",
}
RESOLVED_EMOJI = ":white_check_mark:"
UNKNOWN_EMOJI = ":grey_question:"
_SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")
_REASONS = {
    "initial": "new",
    "update": "updated",
    "repeat": "reminder",
    "callback": "task callback",
}
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_TITLE_PREFIX = re.compile(r"^(\s*\[[A-Z]+(?::\d+)?\]\s*)+")

Block = dict[str, Any]


def render_slack(view: MessageView, *, max_alerts: int = DEFAULT_MAX_ALERTS) -> tuple[str, list[Block]]:
    """``(text, blocks)`` for ``chat.postMessage`` or an incoming webhook.

    One section per alert (firing first, then resolved), at most ``max_alerts`` of them; the
    rest are summarised in one line, so a group of any size is one valid message.
    """
    max_alerts = _alert_budget(max_alerts)
    firing, resolved = list(view.firing), list(view.resolved)
    shown_firing = firing[:max_alerts]
    shown_resolved = resolved[: max_alerts - len(shown_firing)]

    blocks: list[Block] = [
        _header(f"{_head_emoji(view)} {view.title}"),
        _context(_summary_line(view)),
    ]
    blocks.extend(_section(_alert_text(alert)) for alert in shown_firing)
    if shown_resolved:
        if shown_firing:
            blocks.append({"type": "divider"})
        blocks.extend(_section(_alert_text(alert)) for alert in shown_resolved)
    hidden = [*firing[len(shown_firing) :], *resolved[len(shown_resolved) :]]
    if hidden:
        blocks.append(_context(_more_line(hidden)))
    return _fallback_text(view), blocks


def render_slack_resolved_update(
    view: MessageView, *, max_alerts: int = DEFAULT_MAX_ALERTS
) -> tuple[str, list[Block]]:
    """``(text, blocks)`` for ``chat.update`` of the original message once all of it resolved.

    The header says RESOLVED, each alert is one struck-through line. Should ``view`` still hold
    firing alerts, the original is updated to the current state instead (:func:`render_slack`).
    """
    if view.firing:
        return render_slack(view, max_alerts=max_alerts)
    alerts = list(view.resolved)
    subject = _TITLE_PREFIX.sub("", view.title).strip() or "alerts"
    summary = "The alert resolved" if len(alerts) == 1 else f"All {len(alerts)} alerts resolved"
    blocks: list[Block] = [
        _header(f"{RESOLVED_EMOJI} [RESOLVED] {subject}"),
        _context(summary + _group_suffix(view.group_labels)),
    ]
    shown = alerts[: _alert_budget(max_alerts)]
    for chunk in _chunks((_struck_line(alert) for alert in shown), SECTION_MAX):
        blocks.append(_section(chunk))
    if len(alerts) > len(shown):
        blocks.append(_context(_more_line(alerts[len(shown) :])))
    text = _clip_mrkdwn(f"{RESOLVED_EMOJI} [RESOLVED] {escape(subject)}", TEXT_MAX)
    return text, blocks


# -- text helpers -------------------------------------------------------------------------------


def escape(text: str) -> str:
    """User text made inert for mrkdwn: ``&``, ``<`` and ``>`` as Slack's three entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, with an ellipsis when shortened (raw text, before escaping)."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _clip_mrkdwn(text: str, limit: int) -> str:
    """Escaped mrkdwn shortened to ``limit`` characters without cutting an entity (``&amp;``) or
    a link / date token (``<…>``) in half."""
    if len(text) <= limit:
        return text
    cut = 0
    in_token = False  # inside <…> (a link or a date: only ours, user text is escaped)
    in_entity = False  # inside &…;
    for index, char in enumerate(text[: limit - 1]):
        if char == "<":
            in_token = True
        elif char == ">" and in_token:
            in_token = False
        elif char == "&":
            in_entity = True
            continue
        elif char == ";" and in_entity:
            in_entity = False
        if not in_token and not in_entity:
            cut = index + 1
    return text[:cut].rstrip() + "…"


def _code(text: str, limit: int = 200) -> str:
    """Inline code for a short user value: one line, no backtick to break out of the span."""
    flat = " ".join(text.split()).replace("`", "'")
    return f"`{escape(_clip(flat, limit))}`" if flat else "` `"


def _plain(text: str, limit: int) -> str:
    """A one-line user text, escaped."""
    return escape(_clip(" ".join(text.split()), limit))


def _link(url: str, label: str) -> str:
    label_text = _plain(label, 80).replace("|", "¦") or "link"
    url = url.strip()
    if not url.lower().startswith(_LINK_SCHEMES) or len(url) > 2000:
        return f"{label_text}: {_code(url, 120)}"
    safe_url = (
        url.replace("&", "&amp;")
        .replace("<", "%3C")
        .replace(">", "%3E")
        .replace("|", "%7C")
        .replace(" ", "%20")
        .replace("\n", "")
    )
    return f"<{safe_url}|{label_text}>"


def _date(epoch: float) -> str:
    """A Slack date token (shown in each reader's time zone) with a UTC fallback."""
    seconds = int(epoch)
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))
    return f"<!date^{seconds}^{{date_short_pretty}} {{time}}|{fallback}>"


def _value(value: float | None) -> str:
    if value is None:
        return "no data"
    if value != value:  # NaN
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _severity_name(severity: str) -> str:
    return _clip(" ".join(str(severity).split()).upper(), 20) or "UNKNOWN"


def _emoji(alert: AlertView) -> str:
    if alert.state == "resolved":
        return RESOLVED_EMOJI
    return SEVERITY_EMOJI.get(alert.severity, UNKNOWN_EMOJI)


def _head_emoji(view: MessageView) -> str:
    if not view.firing:
        return RESOLVED_EMOJI
    known = [a.severity for a in view.firing if a.severity in _SEVERITY_ORDER]
    if not known:
        return UNKNOWN_EMOJI
    return SEVERITY_EMOJI[min(known, key=_SEVERITY_ORDER.index)]


def _labels(labels: Mapping[str, str], limit: int = 12) -> str:
    items = sorted(labels.items())
    shown = " ".join(_code(f"{key}={value}", 120) for key, value in items[:limit])
    if len(items) > limit:
        shown += f" +{len(items) - limit} more"
    return shown


# -- blocks ---------------------------------------------------------------------------------------


def _header(text: str) -> Block:
    flat = " ".join(text.split())
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(flat, HEADER_MAX), "emoji": True}}


def _section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip_mrkdwn(mrkdwn, SECTION_MAX)}}


def _context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip_mrkdwn(mrkdwn, SECTION_MAX)}]}


def _alert_budget(max_alerts: int) -> int:
    # header, context, divider and the "more" line take four blocks at most
    return max(1, min(int(max_alerts), MAX_BLOCKS - 4))


def _group_suffix(group_labels: Mapping[str, str]) -> str:
    return f" · group {_labels(group_labels, 8)}" if group_labels else ""


def _summary_line(view: MessageView) -> str:
    parts = [f"*{len(view.firing)}* firing", f"*{len(view.resolved)}* resolved"]
    reason = _REASONS.get(view.reason, _plain(view.reason, 40))
    if reason:
        parts.append(reason)
    return " · ".join(parts) + _group_suffix(view.group_labels)


def _state_line(alert: AlertView) -> str:
    if alert.state == "resolved":
        line = "*RESOLVED*"
        if alert.resolved_at is not None:
            line += f" {_date(alert.resolved_at)}"
    else:
        line = "*FIRING*"
        if alert.active_since is not None:
            line += f" since {_date(alert.active_since)}"
    if alert.acked_by:
        line += f" · acknowledged by {_plain(alert.acked_by, 100)}"
    return line


def _links_line(alert: AlertView, limit: int = 6) -> str:
    links = [_link(url, label) for label, url in list(alert.links.items())[:limit] if url]
    if alert.runbook_url:
        links.append(_link(alert.runbook_url, "Runbook"))
    return " · ".join(links)


def _alert_text(alert: AlertView) -> str:
    title = _plain(alert.title, 200) or _plain(alert.rule_id, 200)
    lines = [
        f"{_emoji(alert)} *{_severity_name(alert.severity)}* · *{title}*",
        _state_line(alert),
    ]
    measure = f"Value {_code(_value(alert.value), 60)}"
    if alert.threshold:
        measure += f" vs threshold {_code(alert.threshold, 300)}"
    lines.append(measure)
    if alert.labels:
        lines.append(f"Labels: {_labels(alert.labels)}")
    links = _links_line(alert)
    head = "\n".join(lines)
    # the description takes what the rest leaves of the section
    if alert.description and alert.description.strip():
        room = SECTION_MAX - len(head) - len(links) - 4
        if room > 20:
            description = _clip_mrkdwn(escape(_clip(alert.description.strip(), room)), room)
            head += "\n" + description
    return head + ("\n" + links if links else "")


def _struck_line(alert: AlertView) -> str:
    title = _plain(alert.title, 200) or _plain(alert.rule_id, 200)
    line = f"{RESOLVED_EMOJI} ~{_severity_name(alert.severity)} · {title}~"
    if alert.resolved_at is not None:
        line += f" · resolved {_date(alert.resolved_at)}"
    if alert.labels:
        line += f" · {_labels(alert.labels, 4)}"
    return line


def _more_line(hidden: Sequence[AlertView]) -> str:
    firing = sum(1 for a in hidden if a.state != "resolved")
    resolved = len(hidden) - firing
    noun = "alert" if len(hidden) == 1 else "alerts"
    names = sorted({" ".join(a.title.split()) for a in hidden})
    listed = ", ".join(_plain(name, 60) for name in names[:10])
    if len(names) > 10:
        listed += ", …"
    return f"…and *{len(hidden)}* more {noun} ({firing} firing, {resolved} resolved): {listed}"


def _chunks(lines: Iterable[str], limit: int) -> list[str]:
    """Lines joined into texts of at most ``limit`` characters each."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = _clip_mrkdwn(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def _fallback_text(view: MessageView) -> str:
    """The top-level ``text``: the title and the first alerts, never empty."""
    head = _plain(view.title, 300) or "etlops alert"
    alerts = [*view.firing, *view.resolved]
    items = []
    for alert in alerts[:5]:
        state = "resolved" if alert.state == "resolved" else _severity_name(alert.severity).lower()
        items.append(f"{state}: {_plain(alert.title, 120)}")
    if len(alerts) > 5:
        items.append(f"and {len(alerts) - 5} more")
    return _clip_mrkdwn(head + (" — " + "; ".join(items) if items else ""), TEXT_MAX)
