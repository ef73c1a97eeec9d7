"""Query strategies on synthetic pools: validity of picks, ranking, diversity, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from core import strategies
from core.errors import LabelbotError
from core.learner import PoolScores
from core.strategies import STRATEGIES, MarginKMeans, Pick, _rank, get_strategy

CLASSES = ["card_arrival", "card_delivery_estimate", "lost_or_stolen_card", "pin_blocked"]
MODEL_BASED = ["least-confidence", "margin", "entropy", "margin-kmeans"]


def unit(X: np.ndarray) -> np.ndarray:
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def pool():
    rng = np.random.default_rng(42)
    n = 300
    embeddings = unit(rng.normal(size=(n, 16)))
    proba = rng.dirichlet(np.ones(len(CLASSES)), size=n)
    candidates = np.setdiff1d(np.arange(n), np.arange(0, n, 7))  # every 7th row is labeled
    labeled = np.arange(0, n, 7)
    return proba, embeddings, candidates, labeled


def five_blobs(per_blob: int | list[int] = 40, seed: int = 0):
    """5 well-separated gaussian blobs in 16 dims; returns embeddings and blob id per row."""
    rng = np.random.default_rng(seed)
    sizes = [per_blob] * 5 if isinstance(per_blob, int) else per_blob
    centers = unit(rng.normal(size=(5, 16)))
    X = np.concatenate([c + 0.03 * rng.normal(size=(k, 16)) for c, k in zip(centers, sizes, strict=True)])
    blob = np.repeat(np.arange(5), sizes)
    return unit(X), blob


def run(name, *, proba, embeddings, candidates, n, seed=0, labeled=None, classes=CLASSES):
    return get_strategy(name).query(proba=proba, embeddings=embeddings, candidates=candidates,
                                    classes=classes, n=n, rng=np.random.default_rng(seed), labeled=labeled)


def assert_valid(picks, candidates, n):
    idx = [p.index for p in picks]
    assert all(isinstance(p, Pick) for p in picks)
    assert len(idx) == min(n, len(np.unique(candidates)))
    assert len(set(idx)) == len(idx)
    assert set(idx) <= set(np.asarray(candidates).tolist())
    assert all(isinstance(p.index, int) for p in picks)
    assert all(np.isfinite(p.score) for p in picks)
    assert all(p.reason.strip() for p in picks)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("n", [1, 10, 50])
def test_picks_are_valid(pool, name, n):
    proba, emb, cand, labeled = pool
    assert_valid(run(name, proba=proba, embeddings=emb, candidates=cand, n=n, labeled=labeled), cand, n)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_more_requested_than_candidates(pool, name):
    proba, emb, _, labeled = pool
    cand = np.array([3, 5, 8, 13, 21])
    picks = run(name, proba=proba, embeddings=emb, candidates=cand, n=20, labeled=labeled)
    assert sorted(p.index for p in picks) == cand.tolist()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_empty_candidates_and_zero_n(pool, name):
    proba, emb, cand, _ = pool
    assert run(name, proba=proba, embeddings=emb, candidates=np.array([], dtype=int), n=5) == []
    assert run(name, proba=proba, embeddings=emb, candidates=cand, n=0) == []


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_duplicate_candidates_give_unique_picks(pool, name):
    proba, emb, _, _ = pool
    cand = np.array([4, 4, 9, 9, 9, 11, 12, 12])
    picks = run(name, proba=proba, embeddings=emb, candidates=cand, n=10)
    assert sorted(p.index for p in picks) == [4, 9, 11, 12]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_without_model(pool, name):
    _, emb, cand, labeled = pool
    assert_valid(run(name, proba=None, embeddings=emb, candidates=cand, n=12, labeled=labeled), cand, 12)
    one_col = np.ones((emb.shape[0], 1))
    picks = run(name, proba=one_col, embeddings=emb, candidates=cand, n=12, classes=["only"])
    assert_valid(picks, cand, 12)


@pytest.mark.parametrize("name", MODEL_BASED)
def test_model_based_strategies_fall_back_to_cold_start(name):
    emb, blob = five_blobs()
    picks = run(name, proba=None, embeddings=emb, candidates=np.arange(len(emb)), n=5)
    assert {blob[p.index] for p in picks} == set(range(5))
    assert all("cluster" in p.reason for p in picks)


def brute_force_margin(row) -> float:
    top = sorted(row, reverse=True)
    return top[0] - top[1]


def test_margin_picks_smallest_margins(pool):
    proba, emb, cand, _ = pool
    picks = run("margin", proba=proba, embeddings=emb, candidates=cand, n=15)
    expected = sorted(cand.tolist(), key=lambda i: brute_force_margin(proba[i]))[:15]
    assert [p.index for p in picks] == expected
    # Higher score = more informative = smaller margin.
    assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)


def test_least_confidence_and_entropy_rank_by_their_measure(pool):
    proba, emb, cand, _ = pool
    lc = run("least-confidence", proba=proba, embeddings=emb, candidates=cand, n=10)
    assert [p.index for p in lc] == sorted(cand.tolist(), key=lambda i: max(proba[i]))[:10]
    ent = run("entropy", proba=proba, embeddings=emb, candidates=cand, n=10)

    def h(i):
        return -sum(p * np.log(p) for p in proba[i] if p > 0)

    assert [p.index for p in ent] == sorted(cand.tolist(), key=h, reverse=True)[:10]


@pytest.mark.parametrize("name", ["margin", "least-confidence", "entropy", "margin-kmeans"])
def test_ties_are_not_broken_by_index(name):
    n_rows = 200
    emb = unit(np.random.default_rng(0).normal(size=(n_rows, 16)))
    proba = np.tile([0.4, 0.35, 0.15, 0.1], (n_rows, 1))  # every row equally uncertain
    cand = np.arange(n_rows)
    runs = [[p.index for p in run(name, proba=proba, embeddings=emb, candidates=cand, n=10, seed=s)]
            for s in range(3)]
    assert all(r != list(range(10)) for r in runs)
    assert len({tuple(sorted(r)) for r in runs}) > 1  # different rng, different picks


def test_margin_reason_names_the_two_top_classes(pool):
    proba, emb, cand, _ = pool
    for p in run("margin", proba=proba, embeddings=emb, candidates=cand, n=5):
        first, second = np.argsort(-proba[p.index])[:2]
        assert CLASSES[first] in p.reason and CLASSES[second] in p.reason
        assert f"{brute_force_margin(proba[p.index]):.2f}" in p.reason


@pytest.mark.parametrize("name", ["random", "least-confidence", "entropy", "margin-kmeans"])
def test_model_reasons_name_the_best_guess(pool, name):
    proba, emb, cand, _ = pool
    for p in run(name, proba=proba, embeddings=emb, candidates=cand, n=5):
        assert CLASSES[int(np.argmax(proba[p.index]))] in p.reason


@pytest.mark.parametrize("pick", ["uncertain", "central"])
def test_margin_kmeans_spreads_over_clusters(pick):
    emb, blob = five_blobs()
    proba = np.tile([0.3, 0.3, 0.2, 0.2], (len(emb), 1))  # all equally uncertain
    for seed in range(3):
        picks = MarginKMeans(pick=pick).query(proba=proba, embeddings=emb, candidates=np.arange(len(emb)),
                                              classes=CLASSES, n=5, rng=np.random.default_rng(seed))
        assert {blob[p.index] for p in picks} == set(range(5))


def test_plain_margin_does_not_spread_when_one_cluster_is_most_uncertain():
    # Contrast for the test above: blob 0 is slightly more uncertain, margin takes only blob 0,
    # margin-kmeans still covers several blobs.
    emb, blob = five_blobs()
    rng = np.random.default_rng(3)
    top = np.where(blob == 0, 0.40, 0.45) + 0.001 * rng.random(len(emb))
    proba = np.stack([top, 1 - top - 0.2, np.full(len(emb), 0.1), np.full(len(emb), 0.1)], axis=1)
    cand = np.arange(len(emb))
    margin_blobs = {blob[p.index] for p in run("margin", proba=proba, embeddings=emb, candidates=cand, n=5)}
    mk_picks = run("margin-kmeans", proba=proba, embeddings=emb, candidates=cand, n=5)
    mk_blobs = {blob[p.index] for p in mk_picks}
    assert margin_blobs == {0}
    assert len(mk_blobs) >= 2


def test_margin_kmeans_stays_among_uncertain_candidates(pool):
    proba, emb, cand, _ = pool
    n = 5
    picks = run("margin-kmeans", proba=proba, embeddings=emb, candidates=cand, n=n)
    uncertain = set(sorted(cand.tolist(), key=lambda i: brute_force_margin(proba[i]))[: 10 * n])
    assert {p.index for p in picks} <= uncertain
    margins = [brute_force_margin(proba[p.index]) for p in picks]
    assert margins == sorted(margins)  # ordered by margin ascending


def test_margin_kmeans_with_identical_embeddings_still_fills_the_batch():
    emb = np.tile(unit(np.ones((1, 16))), (100, 1))
    proba = np.random.default_rng(0).dirichlet(np.ones(4), size=100)
    picks = run("margin-kmeans", proba=proba, embeddings=emb, candidates=np.arange(100), n=5)
    assert_valid(picks, np.arange(100), 5)
    picks = run("cold-start", proba=None, embeddings=emb, candidates=np.arange(100), n=5)
    assert_valid(picks, np.arange(100), 5)


def test_cold_start_covers_all_blobs():
    emb, blob = five_blobs()
    for seed in range(3):
        picks = run("cold-start", proba=None, embeddings=emb, candidates=np.arange(len(emb)), n=5, seed=seed)
        assert {blob[p.index] for p in picks} == set(range(5))
        assert all("representative" in p.reason for p in picks)


def test_cold_start_puts_unexplored_cluster_first():
    # Blob 4 is the smallest, so only its distance from everything labeled can put it first.
    emb, blob = five_blobs([60, 60, 60, 60, 30])
    labeled = np.flatnonzero(blob < 4)[::12]  # 5 rows of each of blobs 0-3 are labeled, none of blob 4
    cand = np.setdiff1d(np.arange(len(emb)), labeled)
    picks = run("cold-start", proba=None, embeddings=emb, candidates=cand, n=5, labeled=labeled)
    assert blob[picks[0].index] == 4
    assert "unexplored" in picks[0].reason
    assert picks[0].score > max(p.score for p in picks[1:])


def test_strategy_validates_shapes(pool):
    proba, emb, cand, _ = pool
    with pytest.raises(ValueError):
        run("margin", proba=proba[:10], embeddings=emb, candidates=cand, n=3)
    with pytest.raises(ValueError):
        run("margin", proba=proba, embeddings=emb, candidates=cand, n=3, classes=CLASSES[:2])
    with pytest.raises(ValueError):
        run("random", proba=proba, embeddings=emb, candidates=np.array([len(emb)]), n=1)


def test_registry_and_unknown_name():
    expected = {
        "random", "least-confidence", "margin", "entropy", "margin-kmeans", "max-uncertainty-kmeans",
        "cold-start",
    }
    assert set(STRATEGIES) == expected
    for name in STRATEGIES:
        assert get_strategy(name).name == name
    with pytest.raises(LabelbotError) as err:
        get_strategy("smartest")
    assert "smartest" in str(err.value)
    assert all(name in str(err.value) for name in STRATEGIES)


@pytest.mark.parametrize("n", [1, 4, 9, 30, 100, 250])
def test_margin_kmeans_chunks_fill_any_batch(pool, n):
    proba, emb, cand, _ = pool  # 257 candidates: the 10 x chunk bands run out for the larger n
    picks = MarginKMeans(chunk=4).query(proba=proba, embeddings=emb, candidates=cand, classes=CLASSES,
                                        n=n, rng=np.random.default_rng(0))
    assert_valid(picks, cand, n)
    margins = [brute_force_margin(proba[p.index]) for p in picks]
    assert margins == sorted(margins)


def test_margin_kmeans_queue_prefix_is_a_diverse_batch():
    # The first chunk of a long queue must cover the blobs like a batch of that size would.
    emb, blob = five_blobs()
    proba = np.tile([0.3, 0.3, 0.2, 0.2], (len(emb), 1))
    picks = MarginKMeans(chunk=5).query(proba=proba, embeddings=emb, candidates=np.arange(len(emb)),
                                        classes=CLASSES, n=20, rng=np.random.default_rng(0))
    assert len(picks) == 20
    assert {blob[p.index] for p in picks[:5]} == set(range(5))


def test_cold_start_queue_prefix_is_spread_out():
    # 20 clusters over 5 blobs: the first 5 picks of the queue must still hit 5 different blobs.
    emb, blob = five_blobs()
    for seed in range(3):
        picks = run("cold-start", proba=None, embeddings=emb, candidates=np.arange(len(emb)), n=20, seed=seed)
        assert len(picks) == 20
        assert {blob[p.index] for p in picks[:5]} == set(range(5))
        assert [p.score for p in picks] == sorted((p.score for p in picks), reverse=True)


@pytest.mark.parametrize("top", [0, 1, 5, 37, 299, 300, 500])
def test_partial_ranking_is_the_head_of_the_full_ranking(top):
    # Few distinct priorities: many ties at the boundary, broken by the same random draws.
    priority = np.random.default_rng(1).integers(0, 6, size=300).astype(float)
    full = _rank(priority, np.random.default_rng(7))
    assert _rank(priority, np.random.default_rng(7), top=top).tolist() == full[:top].tolist()


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_pool_scores_pick_what_the_probabilities_pick(pool, name):
    proba, emb, cand, labeled = pool
    from_proba = run(name, proba=proba, embeddings=emb, candidates=cand, n=20, labeled=labeled)
    from_scores = get_strategy(name).query(
        proba=None, scores=PoolScores.from_proba(proba), embeddings=emb, candidates=cand, classes=CLASSES,
        n=20, rng=np.random.default_rng(0), labeled=labeled)
    assert from_scores == from_proba


@pytest.mark.parametrize("batch_size", [None, 7, 60])
def test_margin_kmeans_ranks_only_what_its_bands_use(pool, batch_size, monkeypatch):
    # Ranking only the 10 x n most uncertain candidates must not change the queue.
    proba, emb, cand, labeled = pool
    query = dict(proba=proba, embeddings=emb, candidates=cand, classes=CLASSES, n=25, labeled=labeled,
                 batch_size=batch_size)
    partial = MarginKMeans().query(rng=np.random.default_rng(3), **query)
    monkeypatch.setattr(strategies, "_rank", lambda priority, rng, top=None: _rank(priority, rng))
    full = MarginKMeans().query(rng=np.random.default_rng(3), **query)
    assert partial == full


@pytest.mark.parametrize("name", ["cold-start", "margin-kmeans", "entropy"])
def test_float16_memmap_embeddings(tmp_path, pool, name):
    proba, emb, cand, labeled = pool
    mm = np.memmap(tmp_path / "vectors.f16", dtype=np.float16, mode="w+", shape=emb.shape)
    mm[:] = emb
    mm.flush()
    half = np.memmap(tmp_path / "vectors.f16", dtype=np.float16, mode="r", shape=emb.shape)
    model = None if name == "cold-start" else proba
    picks = run(name, proba=model, embeddings=half, candidates=cand, n=12, labeled=labeled)
    assert_valid(picks, cand, 12)
    # The same picks as the same values in float32: nothing is computed in float16.
    widened = np.asarray(half, dtype=np.float32)
    assert picks == run(name, proba=model, embeddings=widened, candidates=cand, n=12, labeled=labeled)
