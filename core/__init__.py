"""labelbot core: active learning, storage and embeddings. Never imports Slack."""

from core.config import Settings, load_settings
from core.errors import LabelbotError
from core.service import LabelingService

__all__ = ["LabelbotError", "LabelingService", "Settings", "load_settings"]
