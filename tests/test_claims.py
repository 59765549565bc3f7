"""The claims' statistics by hand and against scipy, their verdicts on synthetic curves whose
answer is known, and the calibration: wrong verdicts at most 5% of the time."""

import chex
import numpy as np
import pytest
import scipy.stats

from apb_jax import calibration, claims, report, stats

STEPS = np.array([0, 100, 200])
SEEDS = 2
BUDGETS = {'meta_train': 1000, 'adapt': 200}
TIMING = {'total_s': 1.0, 'compile_s': 0.0, 'env_steps': 1, 'env_steps_per_s': 1.0}


def _curves(final, start=0.0):
  """[runs, 3] curves rising linearly from `start` to `final` (per run)."""
  final = np.asarray(final, np.float64)
  return STEPS, np.stack([np.full_like(final, start), (start + final) / 2, final], axis=1)


# The tests over tasks ----------------------------------------------------------------------


def test_sign_flip_p_values_by_hand():
  # 4 tasks all above 0: only the identity reaches the observed mean, 1 of 16 sign vectors.
  greater, less = stats.sign_flip_pvalues([1.0, 2.0, 3.0, 4.0])
  assert (greater, less) == (1 / 16, 1.0)
  assert stats.task_test([1.0, 2.0, 3.0, 4.0])['p_value'] == 2 / 16
  # [1, -2, 3, 4]: the flipped sets whose sum is <= 0 are {}, {-2}, {1, -2}: 3 of 16.
  assert stats.sign_flip_pvalues([1.0, -2.0, 3.0, 4.0]) == (3 / 16, 14 / 16)
  # Batched rows agree with one row at a time.
  x = np.random.default_rng(0).normal(size=(5, 7))
  one_by_one = zip(*map(stats.sign_flip_pvalues, x), strict=True)
  chex.assert_trees_all_close(stats.sign_flip_pvalues(x), tuple(np.array(p) for p in one_by_one))


@pytest.mark.parametrize('n', [2, 3, 6, 9])
def test_sign_flip_p_values_equal_scipys_exact_permutation_test(n):
  rng = np.random.default_rng(n)
  for x in (rng.normal(size=n), np.round(rng.normal(size=n) * 2)):   # the second has ties
    greater, less = stats.sign_flip_pvalues(x)
    for side, ours in (('greater', greater), ('less', less)):
      theirs = scipy.stats.permutation_test((x,), np.mean, permutation_type='samples',
                                            alternative=side, n_resamples=np.inf).pvalue
      assert ours == pytest.approx(theirs, abs=1e-12), (x, side)


def test_sign_flip_interval_is_the_set_of_means_the_test_does_not_reject():
  # 6 tasks: only "all 6 on one side" reaches 0.05, so the interval is [min, max].
  x = np.array([3.0, -1.0, 4.0, 1.5, 5.0, 9.0])
  t = stats.task_test(x)
  assert (t['ci_low'], t['ci_high'], t['mean']) == (-1.0, 9.0, x.mean())
  assert t['test'] == 'sign-flip permutation over 6 tasks, exact (64 sign vectors)'
  x = np.random.default_rng(1).normal(0.5, 1.0, 9)
  t = stats.task_test(x)
  for mu, rejected in ((t['ci_low'] - 1e-7, True), (t['ci_low'] + 1e-7, False),
                       (t['ci_high'] - 1e-7, False), (t['ci_high'] + 1e-7, True)):
    assert (stats.task_test(x - mu)['p_value'] <= 0.05) == rejected, mu
  # Under 6 tasks no mean can be rejected at 0.05: no interval.
  assert stats.task_test(x[:5])['ci_low'] is None and stats.min_tasks(0.05) == 6
  assert stats.min_tasks(0.1) == 5


def test_above_twenty_tasks_the_t_interval_by_hand():
  x = np.random.default_rng(2).normal(1.0, 2.0, 25)
  t = stats.task_test(x)
  half = scipy.stats.t.ppf(0.975, 24) * x.std(ddof=1) / 5.0
  assert t['ci_low'] == pytest.approx(x.mean() - half) and t['ci_high'] == pytest.approx(
      x.mean() + half)
  assert t['p_value'] == pytest.approx(scipy.stats.ttest_1samp(x, 0.0).pvalue)
  assert t['test'] == 't-test over 25 tasks'


def test_tasks_for_power_matches_the_t_tests_power():
  n = stats.tasks_for_power(1.0)

  def power(k):   # simulated: the share of 4,000 samples of k tasks (effect 1 sd) rejected
    x = np.random.default_rng(k).normal(1.0, 1.0, (4000, k))
    return (scipy.stats.ttest_1samp(x, 0.0, axis=1).pvalue <= 0.05).mean()

  assert power(n - 1) < 0.8 <= power(n) + 0.02, n
  assert stats.tasks_for_power(0.5) > 3 * n and stats.tasks_for_power(0.0) is None


# Tasks are the unit --------------------------------------------------------------------------


def test_seeds_are_averaged_within_a_task_and_the_design_can_be_insufficient():
  # 3 tasks x 4 seeds, every run of A above B: twelve "independent" runs would look decisive,
  # but 3 tasks give at best p = 2/8.
  b = np.arange(12.0)
  a = b + np.repeat([1.0, 2.0, 3.0], 4) + np.tile([0.5, -0.5, 0.25, -0.25], 3)
  d = claims.paired_difference(a, b, seeds=4)
  assert d['per_task'] == [1.0, 2.0, 3.0] and d['mean'] == 2.0
  assert (d['verdict'], d['p_value'], d['min_tasks']) == ('insufficient', 0.25, 6)
  assert d['ci_low'] is None and (d['n_tasks'], d['seeds']) == (3, 4)
  # Six tasks, all above: decided, p = 2/64, the interval [min, max] of the task differences.
  d = claims.paired_difference(np.arange(6.0) + 1, np.zeros(6))
  assert (d['verdict'], d['p_value'], d['ci_low'], d['ci_high']) == ('supported', 2 / 64, 1, 6)


def test_probability_of_improvement_by_hand():
  # One task, two seeds each: pairs (1 vs 1.5, 1 vs 0, 2 vs 1.5, 2 vs 0) -> 3 of 4 wins.
  assert claims.probability_of_improvement([1.0, 2.0], [1.5, 0.0], 2)['value'] == 0.75
  # Ties count one half; tasks are averaged: task 1 all ties (0.5), task 2 all wins (1).
  poi = claims.probability_of_improvement([1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 0.0, 2.0], 2)
  assert poi['value'] == 0.75 and poi['per_task'] == [0.5, 1.0]
  assert poi['ci_low'] is None                              # 2 tasks: no interval
  # Six tasks: the same interval as the difference's, over the per-task values.
  poi = claims.probability_of_improvement([1, 1, 1, 0, 1, 1], [0, 0, 0, 0, 0, 1], 1)
  assert poi['per_task'] == [1.0, 1.0, 1.0, 0.5, 1.0, 0.5]
  assert (poi['value'], poi['ci_low'], poi['ci_high']) == (pytest.approx(5 / 6), 0.5, 1.0)


def test_final_return_is_the_mean_of_the_last_evaluations_never_the_first():
  returns = np.array([[0.0, 1.0, 2.0, 6.0], [5.0, 5.0, 3.0, 4.0]])
  np.testing.assert_array_equal(stats.final_return(returns, 1), [6.0, 4.0])
  np.testing.assert_array_equal(stats.final_return(returns, 2), [4.0, 3.5])
  np.testing.assert_array_equal(stats.final_return(returns, 9), [3.0, 4.0])   # 3 of 4 at most


# The claims' verdicts ------------------------------------------------------------------------

SCRATCH = np.full(16, -100.0)            # 8 tasks x 2 seeds; random -200: margin 0.1 x 100 = 10
NOISE = np.repeat([3.0, -3.0, 2.0, -2.0, 1.0, -1.0, 0.5, -0.5], SEEDS)


@pytest.mark.parametrize('apb, expected, expected_auc', [
    (SCRATCH + NOISE / 10, 'supported', 'supported'),     # equal to scratch: within the margin
    (SCRATCH - 30.0 + NOISE, 'contradicted', 'contradicted'),    # worse by more than 10
    (SCRATCH - 10.0 + NOISE, 'inconclusive', None),               # on the margin
])
def test_claim_one_is_non_inferiority_within_the_declared_margin(apb, expected, expected_auc):
  curves = {'apb': {'test_id': _curves(apb)}, 'scratch': {'test_id': _curves(SCRATCH)}}
  first = claims.compute(curves, seeds=SEEDS, random_return={'test_id': -200.0},
                         budgets=BUDGETS)[0]
  assert (first['claim'], first['hypothesis'], first['verdict']) == (
      1, 'non-inferiority', expected), first
  assert first['margin']['value'] == pytest.approx(10.0) and first['margin']['fraction'] == 0.1
  assert (first['n_tasks'], first['seeds'], first['level']) == (8, SEEDS, 0.05)
  assert first['test'] == 'sign-flip permutation over 8 tasks, exact (256 sign vectors)'
  if expected_auc:
    assert first['auc_verdict'] == expected_auc
  d = first['final_return_diff']
  np.testing.assert_allclose(d['per_task'], claims.task_means(apb - SCRATCH, SEEDS))
  assert d['mean'] == pytest.approx(np.mean(apb - SCRATCH))
  if expected != 'inconclusive':
    assert first['p_value'] == 2 / 256                    # all 8 tasks on one side of -10
    assert (d['ci_low'] > -10) == (expected == 'supported') and (d['ci_high'] < -10) == (
        expected == 'contradicted')
  else:
    assert first['tasks_needed'] is None                  # no effect: no number of tasks
  assert first['budgets'] == BUDGETS
  # The same runs read as superiority: equal methods are not "better".
  superiority = claims.paired_difference(apb, SCRATCH, seeds=SEEDS)['verdict']
  assert superiority == {'supported': 'inconclusive'}.get(expected, 'contradicted')


def test_the_margin_is_per_task_from_each_tasks_random_return():
  scratch = np.repeat([-100.0, -50.0, 0.0, 50.0, 100.0, 150.0], SEEDS)
  random = np.array([-200.0, -150.0, -100.0, -50.0, 0.0, 50.0])      # each task's gain: 100
  apb = scratch - 9.0                                                # worse by 9 < 10
  curves = {'apb': {'test_id': _curves(apb)}, 'scratch': {'test_id': _curves(scratch)}}
  first = claims.compute(curves, seeds=SEEDS, random_return={'test_id': random},
                         budgets=BUDGETS)[0]
  assert first['margin']['per_task'] == pytest.approx([10.0] * 6)
  assert first['verdict'] == 'supported'
  # One random return for the split (-200) makes the gains 100..350: margins 10..35.
  first = claims.compute(curves, seeds=SEEDS, random_return={'test_id': -200.0},
                         budgets=BUDGETS)[0]
  assert first['margin']['per_task'] == pytest.approx([10, 15, 20, 25, 30, 35])
  with pytest.raises(ValueError, match='one value per task'):
    claims.compute(curves, seeds=SEEDS, random_return={'test_id': random[:4]}, budgets=BUDGETS)


def test_claim_two_scores_randominit_against_the_oracle_and_three_against_each_baseline():
  oracle = np.full(12, 100.0)                                        # 6 tasks x 2 seeds
  curves = {'apb_randominit': {'test_id': _curves(np.full(12, 50.0))},   # halfway from random 0
            'oracle': {'test_id': _curves(oracle)},
            'apb': {'test_ood': _curves(np.arange(12.0) + 5)},
            'rl2': {'test_ood': _curves(np.arange(12.0))}}
  out = claims.compute(curves, seeds=SEEDS, random_return={'test_id': 0.0}, budgets=BUDGETS)
  by_number = {c['claim']: c for c in out}
  assert by_number[1]['verdict'] == 'not measured' and 'scratch' in by_number[1]['reason']
  assert by_number[2]['methods'] == ['apb_randominit', 'oracle']
  assert by_number[2]['verdict'] == 'contradicted'            # 50 below, margin 10: all 6 tasks
  assert by_number[2]['normalized_score']['mean'] == pytest.approx(0.5)
  assert by_number[2]['normalized_score']['per_task'] == pytest.approx([0.5] * 6)
  assert by_number[3]['methods'] == ['apb', 'rl2'] and by_number[3]['verdict'] == 'supported'
  assert by_number[3]['hypothesis'] == 'superiority' and by_number[3]['margin']['value'] == 0.0
  text = '\n'.join(claims.markdown(out))
  assert '## Claims' in text and '**supported**' in text and 'not measured' in text
  assert 'non-inferiority (A - B > -10.00: 0.1 x oracle' in text and 'superiority (A' in text
  assert 'sign-flip permutation over 6 tasks' in text and 'p = 0.0312' in text
  assert 'meta train 1,000' in text


def test_four_tasks_are_insufficient_and_the_report_says_how_many_would_decide():
  scratch = np.array([-100.0, -90.0, -80.0, -70.0])
  curves = {'apb': {'test_id': _curves(scratch + [1.0, -2.0, 3.0, 1.0])},
            'scratch': {'test_id': _curves(scratch)}}
  first = claims.compute(curves, seeds=1, random_return={'test_id': -200.0},
                         budgets=BUDGETS)[0]
  assert (first['verdict'], first['min_tasks'], first['p_value']) == ('insufficient', 6, 0.125)
  assert first['final_return_diff']['ci_low'] is None and first['tasks_needed'] >= 6
  row = [line for line in claims.markdown([first]) if line.startswith('| 1 |')][0]
  assert '**insufficient** (4 tasks; 6 could decide it; ~' in row and '[no interval]' in row


def test_build_report_passes_the_margin_and_final_evals_to_the_claims():
  steps = np.array([0, 100, 200, 300])
  scratch = np.tile([0.0, 10.0, 20.0, 40.0], (6, 1))               # last 2 evals: mean 30
  apb = scratch + np.array([0.0, 0.0, 10.0, -11.0])                 # last 2 evals: mean 29.5
  results = {m: {'test_id': {'steps': steps, 'returns': r}} for m, r in (('apb', apb),
                                                                        ('scratch', scratch))}
  r = report.build_report(results, task='t', profile='p', learner='sac', exploration='action',
                          seeds=1, random_return={'test_id': np.full(6, -70.0)}, timing=TIMING,
                          margin=0.05, final_evals=2)
  assert r['methods']['apb']['test_id']['final_return']['per_run'] == [29.5] * 6
  first = r['claims'][0]
  assert first['margin']['value'] == pytest.approx(0.05 * 100)     # |30 - (-70)| x 0.05
  assert 'last 2 evaluations' in first['final_return_rule']
  assert first['final_return_diff']['per_task'] == [-0.5] * 6 and first['verdict'] == 'supported'
  assert r['random_return'] == {'test_id': [-70.0] * 6}


# Calibration -------------------------------------------------------------------------------


def test_calibration_keeps_wrong_verdicts_at_five_percent_and_reports_power():
  rows = calibration.calibrate()                       # 4, 8, 16 tasks x 1-5 seeds, 2,000 runs each
  print('\n' + calibration.calibration_markdown(rows, effect=1.0, seed_sd=1.0, gap=10.0))
  for r in rows:
    bound = 0.05 + 3 * r['mc_se']
    assert r['false_superiority'] <= bound and r['false_non_inferiority'] <= bound, r
  by = {(r['tasks'], r['seeds']): r for r in rows}
  assert all(by[4, s]['power_superiority'] == 0 for s in range(1, 6))    # insufficient
  for s in range(1, 6):
    assert by[16, s]['power_superiority'] > by[8, s]['power_superiority'] + 0.1
  assert by[16, 5]['power_superiority'] > by[16, 1]['power_superiority'] + 0.1   # seeds help
  assert by[16, 3]['power_non_inferiority'] > 0.75


def _bootstrap_decide(e, alpha):
  """The old rule: a 95% percentile bootstrap interval of the mean, read for its side."""
  idx = np.random.default_rng(0).integers(0, e.shape[-1], (400, e.shape[-1]))
  low, high = np.percentile(e[:, idx].mean(axis=-1), [2.5, 97.5], axis=-1)
  return np.where(low > 0, 'supported', np.where(high < 0, 'contradicted', 'inconclusive')), None


def test_calibration_catches_a_bootstrap_at_four_tasks():
  row = calibration.calibrate((4,), (1,), n_sim=1000, decide_fn=_bootstrap_decide)[0]
  assert row['false_superiority'] > 0.1        # >= 1/8: all four on one side


def test_calibrate_command_prints_the_table(capsys):
  calibration.main(['--tasks', '6', '--seeds', '1', '--n-sim', '100'])
  out = capsys.readouterr().out
  assert '| tasks | seeds | false, superiority' in out and '\n| 6 | 1 | ' in out
