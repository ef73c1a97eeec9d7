"""Status digests with charts: the weekly digest job and the extra part of ``/label status``.

Both show answers in the last 7 days per person, the metrics trend and the stopping advice, and upload
the learning-curve chart (``core.charts``, matplotlib Agg) with ``files_upload_v2``.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import blocks
from core.charts import learning_curve_png
from core.service import LabelingService
from core.types import ProjectInfo

log = logging.getLogger(__name__)

WEEK = timedelta(days=7)
# Slack answers these when the bot cannot post to a channel; the chart then goes to the person's DM.
_CANNOT_POST = ("not_in_channel", "channel_not_found", "is_archived", "restricted_action")


def build_digest(
    service: LabelingService,
    project: ProjectInfo,
    *,
    now: datetime,
    title: str | None = None,
    include_progress: bool = True,
) -> tuple[dict[str, Any], bytes]:
    """The digest message and the chart PNG for ``project`` as of ``now``."""
    since = now - WEEK
    status = service.status(project.name)
    runs = service.run_history(project.name)
    advice = service.stopping_advice(project.name)
    message = blocks.digest_message(
        status,
        week=service.answers_by_user(project.name, since=since),
        runs=runs,
        advice=advice,
        since=since,
        title=title,
        include_progress=include_progress,
    )
    png = learning_curve_png(runs, status.label_counts, title=project.name)
    return message, png


def chart_filename(project: ProjectInfo, now: datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", project.name).strip("-")[:60] or f"project-{project.id}"
    return f"{safe}-learning-curve-{now:%Y%m%d}.png"


def upload_chart(
    client: Any,
    channel: str,
    project: ProjectInfo,
    png: bytes,
    *,
    now: datetime,
    fallback_user: str | None = None,
) -> str:
    """Upload the chart to ``channel``; to ``fallback_user``'s DM when the bot cannot post there.

    Returns the channel it went to.
    """
    scores = "micro-F1, macro-F1 and subset accuracy" if project.multi_label else "accuracy and macro-F1"
    kwargs = {
        "file": png,
        "filename": chart_filename(project, now),
        "title": f"{project.name}: learning curve",
        "alt_txt": f"CV {scores} against labels, and labels per class: {project.name}",
    }
    try:
        client.files_upload_v2(channel=channel, **kwargs)
        return channel
    except SlackApiError as exc:
        if fallback_user is None or exc.response.get("error") not in _CANNOT_POST:
            raise
    dm = client.conversations_open(users=fallback_user)["channel"]["id"]
    client.files_upload_v2(channel=dm, **kwargs)
    return dm


def post_digest(
    client: Any, service: LabelingService, project: ProjectInfo, channel: str, *, now: datetime
) -> None:
    """The scheduled weekly digest: the message, then its chart, in ``channel``."""
    message, png = build_digest(service, project, now=now)
    client.chat_postMessage(channel=channel, **message)
    upload_chart(client, channel, project, png, now=now)


def send_status_extras(
    client: Any,
    respond: Any,
    service: LabelingService,
    project: ProjectInfo,
    *,
    channel: str,
    user: str,
    now: datetime | None = None,
) -> None:
    """After ``/label status``: an ephemeral trend + advice message and the chart in the channel."""
    now = now or datetime.now(UTC)
    message, png = build_digest(service, project, now=now, title=f"Trend and advice: {project.name}",
                                include_progress=False)
    respond(response_type="ephemeral", **message)
    upload_chart(client, channel, project, png, now=now, fallback_user=user)
