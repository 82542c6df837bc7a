"""The controlled experiment at small scale: TCAV follows a cue whose reliability is known."""
import pytest

from experiments import tcav_controlled as T


@pytest.fixture(scope="module")
def rows():
    return {round(r["q"], 2): r for r in T.run(T.QUICK)}


def table(row, concept):
    return next(t for t in row["tcav"]["conv2"]["table"] if t["concept"] == concept)


def test_cue_reliance_is_set_by_q(rows):
    # ground truth without TCAV: at q = 1 recolouring a red square costs the square logit
    # far more than at chance
    assert rows[1.0]["cue_logit_gap"] > 5 * max(rows[0.33]["cue_logit_gap"], 0.1)


def test_red_passes_at_q1_and_fails_at_chance(rows):
    red1, red0 = table(rows[1.0], "red"), table(rows[0.33], "red")
    assert red1["significant"] and red1["score_mean"] > 0.9
    assert not red0["significant"]
    assert red1["score_mean"] > red0["score_mean"] + 0.2


def test_random_concept_never_passes(rows):
    for row in rows.values():
        assert table(row, "random")["significant"] is False
