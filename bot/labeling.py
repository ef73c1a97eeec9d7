"""What every listener shares: the service, who is an admin, finding projects and sending cards."""

from __future__ import annotations

import threading

from slack_sdk import WebClient

from bot import blocks, ids
from core.errors import LabelbotError, ProjectNotFound
from core.service import LabelingService
from core.types import ProjectInfo


class StaleCard(LabelbotError):
    """A click on a card whose project or label set is gone or changed."""


class Labeling:
    def __init__(self, service: LabelingService, *, admins: frozenset[str] = frozenset()) -> None:
        self.service = service
        self.admins = admins
        self._dms: dict[str, str] = {}
        self._lock = threading.Lock()

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admins

    def project_for_channel(self, channel_id: str | None) -> ProjectInfo:
        """The channel's project, or the only one; a clear message when there is none or several."""
        name = self.service.default_project(channel_id)
        if name is not None:
            return self.service.get_project(name)
        projects = self.service.list_projects()
        if not projects:
            raise LabelbotError("There is no project yet: create one with `labelbot init NAME --labels a,b`.")
        names = ", ".join(p.name for p in projects[:10])
        raise LabelbotError(
            f"There are several projects ({names}); an admin can bind this channel to one with "
            "`/label project NAME`."
        )

    def project_from_ref(self, ref: ids.ProjectRef) -> ProjectInfo:
        """The project a button points at; StaleCard when it was deleted (or its id reused)."""
        try:
            project = self.service.get_project_by_id(ref.project_id)
        except ProjectNotFound:
            raise StaleCard("This project no longer exists.") from None
        if not ref.matches(project.name):
            raise StaleCard("This project no longer exists.")
        return project

    def dm_channel(self, client: WebClient, user_id: str) -> str:
        with self._lock:
            cached = self._dms.get(user_id)
        if cached:
            return cached
        channel = client.conversations_open(users=user_id)["channel"]["id"]
        with self._lock:
            self._dms[user_id] = channel
        return channel

    def send_cards(self, client: WebClient, project: ProjectInfo, user_id: str, n: int = 1) -> int:
        """DM ``user_id`` their next ``n`` cards; returns how many were sent."""
        records = self.service.next_records(project.name, user_id, n)
        if not records:
            return 0
        channel = self.dm_channel(client, user_id)
        for record in records:
            card = blocks.label_card(project, record, nonce=ids.new_nonce())
            client.chat_postMessage(channel=channel, **card)
        return len(records)

    def send_next(self, client: WebClient, project: ProjectInfo, user_id: str, n: int = 1) -> int:
        """Like ``send_cards``, but says so in the DM when nothing is left (after a click, say)."""
        sent = self.send_cards(client, project, user_id, n)
        if not sent:
            self._send_done(client, project, user_id)
        return sent

    def _send_done(self, client: WebClient, project: ProjectInfo, user_id: str) -> None:
        client.chat_postMessage(
            channel=self.dm_channel(client, user_id),
            **blocks.notice(f"Nothing left to label in {project.name} for you right now. Thank you!"),
        )
