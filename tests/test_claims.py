"""The claims' statistics by hand, and their verdicts on synthetic curves whose answer is known."""

import numpy as np
import pytest

from apb_jax import claims

STEPS = np.array([0, 100, 200])
SEEDS = 2
BUDGETS = {'meta_train': 1000, 'adapt': 200}


def _curves(final, start=0.0):
  """[runs, 3] curves rising linearly from `start` to `final` (per run)."""
  final = np.asarray(final, np.float64)
  return STEPS, np.stack([np.full_like(final, start), (start + final) / 2, final], axis=1)


def test_probability_of_improvement_by_hand():
  # One task, two seeds each: pairs (1 vs 1.5, 1 vs 0, 2 vs 1.5, 2 vs 0) -> 3 of 4 wins.
  assert claims.probability_of_improvement([1.0, 2.0], [1.5, 0.0], 2)['value'] == 0.75
  # Ties count one half; tasks are averaged: task 1 all ties (0.5), task 2 all wins (1).
  poi = claims.probability_of_improvement([1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 0.0, 2.0], 2)
  assert poi['value'] == 0.75
  assert poi['ci_low'] == 0.5 and poi['ci_high'] == 1.0      # resampling the two tasks


def test_paired_difference_is_the_mean_difference_with_an_interval_around_it():
  d = claims.paired_difference([3.0, 5.0, 7.0, 9.0], [1.0, 2.0, 3.0, 4.0])
  assert d['mean'] == 3.5 and d['ci_low'] <= 3.5 <= d['ci_high']
  assert d['ci_low'] >= 2.0 and d['ci_high'] <= 5.0          # within the per-run differences


@pytest.mark.parametrize('shift, expected', [(10.0, 'supported'), (-10.0, 'contradicted'),
                                             (0.0, 'inconclusive')])
def test_claim_one_verdict_follows_the_interval_of_the_difference(shift, expected):
  rng = np.random.default_rng(0)
  scratch = rng.normal(-100.0, 5.0, 8)
  noise = rng.normal(0.0, 1.0, 8) if shift else np.array([3, -3, 2, -2, 1, -1, 0.5, -0.5])
  apb = scratch + shift + noise
  out = claims.compute({'apb': {'test_id': _curves(apb)}, 'scratch': {'test_id': _curves(scratch)}},
                       seeds=SEEDS, random_return={'test_id': -200.0}, budgets=BUDGETS)
  first = out[0]
  assert first['claim'] == 1 and first['verdict'] == expected, first
  assert first['auc_verdict'] == expected                  # the curves scale with the final
  np.testing.assert_allclose(first['final_return_diff']['mean'], np.mean(apb - scratch))
  if shift:
    assert first['prob_improvement']['value'] == (1.0 if shift > 0 else 0.0)
  assert first['budgets'] == BUDGETS


def test_claim_two_scores_randominit_against_the_oracle_and_three_against_each_baseline():
  oracle = np.full(4, 100.0)
  curves = {'apb_randominit': {'test_id': _curves(np.full(4, 50.0))},   # halfway from random 0
            'oracle': {'test_id': _curves(oracle)},
            'apb': {'test_ood': _curves(np.array([5.0, 6.0, 7.0, 8.0]))},
            'rl2': {'test_ood': _curves(np.array([1.0, 2.0, 3.0, 4.0]))}}
  out = claims.compute(curves, seeds=SEEDS, random_return={'test_id': 0.0}, budgets=BUDGETS)
  by_number = {c['claim']: c for c in out}
  assert by_number[1]['verdict'] == 'not measured' and 'scratch' in by_number[1]['reason']
  assert by_number[2]['methods'] == ['apb_randominit', 'oracle']
  assert by_number[2]['verdict'] == 'contradicted'                   # 50 < 100 on every run
  assert by_number[2]['normalized_score']['mean'] == pytest.approx(0.5)
  assert by_number[3]['methods'] == ['apb', 'rl2'] and by_number[3]['verdict'] == 'supported'
  text = '\n'.join(claims.markdown(out))
  assert '## Claims' in text and '**supported**' in text and 'not measured' in text
  assert 'meta train 1,000' in text
