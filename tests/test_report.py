"""report.py: statistics on hand-computed inputs, the report schema, and the files written."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from apb_jax import files, report

SEEDS = 2
TASKS = 2
STAT_KEYS = {'mean', 'ci_low', 'ci_high', 'iqm', 'per_run'}
CURVE_KEYS = {'steps', 'mean', 'ci_low', 'ci_high'}
TIMING = {'total_s': 125.0, 'compile_s': 30, 'env_steps': 4000.0, 'env_steps_per_s': 32.0}
RANDOM = {'test_id': 5.0, 'test_ood': 2}


def _results(with_oracle: bool = True) -> dict:
  """Methods in a non-canonical order; oracle has a longer curve. returns [TASKS*SEEDS, n]."""
  rng = np.random.default_rng(7)
  steps = np.array([0, 100, 200, 300])
  out = {}
  for method in ('scratch', 'my_variant', 'apb'):
    out[method] = {split: {'steps': steps,
                           'returns': rng.normal(10.0, 3.0, size=(TASKS * SEEDS, 4))}
                   for split in ('test_id', 'test_ood')}
  # apb, run 3 (task 1, seed 1), test_id: final return 25.
  out['apb']['test_id']['returns'][3, -1] = 25.0
  if with_oracle:
    oracle_steps = np.arange(7) * 100
    out['oracle'] = {}
    for split in ('test_id', 'test_ood'):
      returns = rng.normal(30.0, 3.0, size=(TASKS * SEEDS, 7))
      # test_id finals: task 0 -> [10, 20] (mean 15), task 1 -> [30, 50] (mean 40).
      returns[:, -1] = [10.0, 20.0, 30.0, 50.0] if split == 'test_id' else 40.0
      out['oracle'][split] = {'steps': oracle_steps, 'returns': returns}
  return out


def _build(results):
  return report.build_report(results, task='ant_legs', profile='quick', learner='ppo',
                             exploration='gaussian', seeds=SEEDS, random_return=RANDOM,
                             timing=TIMING)


# summarize / auc / curve_summary ------------------------------------------------------


def test_summarize_hand_computed():
  values = [1, 2, 3, 4, 5, 6, 7, 100]
  s = report.summarize(values)
  assert set(s) == STAT_KEYS
  assert s['mean'] == 16.0  # 128 / 8
  assert s['iqm'] == 4.5  # drop 2 from each end: mean of [3, 4, 5, 6]
  assert s['per_run'] == [float(v) for v in values]
  assert min(values) <= s['ci_low'] < s['mean'] < s['ci_high'] <= max(values)
  assert all(type(s[k]) is float for k in ('mean', 'ci_low', 'ci_high', 'iqm'))
  assert report.summarize([10, 1, 4, 7, 2])['iqm'] == pytest.approx(13 / 3)  # mean of [2, 4, 7]
  assert report.summarize([1, 2, 9])['iqm'] == 4.0  # n < 4: plain mean


def test_summarize_one_run_and_determinism():
  s = report.summarize([3.5])
  assert s['ci_low'] == s['ci_high'] == s['mean'] == s['iqm'] == 3.5
  values = np.random.default_rng(0).normal(size=30)
  assert report.summarize(values) == report.summarize(values)
  assert report.summarize(values, rng_seed=1) != report.summarize(values)


def test_summarize_ci_is_interval_of_the_mean():
  """Bootstrap CI of the mean has half-width close to 1.96 * std / sqrt(n)."""
  values = np.random.default_rng(3).normal(50.0, 10.0, size=400)
  s = report.summarize(values)
  expected = 1.96 * values.std() / np.sqrt(values.size)
  assert (s['ci_high'] - s['ci_low']) / 2 == pytest.approx(expected, rel=0.15)
  assert (s['ci_low'] + s['ci_high']) / 2 == pytest.approx(s['mean'], abs=0.3 * expected)


def test_auc_hand_computed():
  np.testing.assert_allclose(report.auc([0, 10, 20], [[0, 10, 10]]), [7.5])  # (50 + 100) / 20
  np.testing.assert_allclose(report.auc([0, 10, 40], [[3, 3, 3], [-2, -2, -2]]), [3, -2])
  # Uneven spacing counts: the second segment is 3x as long as the first.
  np.testing.assert_allclose(report.auc([0, 10, 40], [[0, 4, 4]]), [(20 + 120) / 40])
  with pytest.raises(ValueError, match='at least 2 evaluation points'):
    report.auc([0], [[1.0]])


def test_curve_summary_per_point():
  returns = np.array([[0.0, 1.0, 5.0], [0.0, 3.0, 5.0]])
  c = report.curve_summary([0, 10, 20], returns)
  assert set(c) == CURVE_KEYS
  assert c['steps'] == [0, 10, 20] and all(type(s) is int for s in c['steps'])
  assert c['mean'] == [0.0, 2.0, 5.0]
  assert c['ci_low'][0] == c['ci_high'][0] == 0.0
  assert 1.0 <= c['ci_low'][1] <= 2.0 <= c['ci_high'][1] <= 3.0


# build_report -------------------------------------------------------------------------


def test_build_report_schema_and_values():
  results = _results()
  r = _build(results)
  assert set(r) == {'task', 'profile', 'learner', 'exploration', 'critic', 'seeds', 'methods',
                    'random_return', 'timing', 'claims', 'inherits'}
  assert r['inherits'] == {}                         # experiment passes what each method has
  assert r['critic'] == 'fresh'                      # the default; experiment passes its own
  # apb and scratch ran: claim 1 measured; claim 2 needs apb_randominit; no baseline ran.
  assert [(c['claim'], c['verdict'] == 'not measured') for c in r['claims']] == [
      (1, False), (2, True)]
  assert (r['task'], r['profile'], r['learner'], r['exploration']) == (
      'ant_legs', 'quick', 'ppo', 'gaussian')
  assert type(r['seeds']) is int and r['seeds'] == SEEDS
  assert list(r['methods']) == ['apb', 'scratch', 'oracle', 'my_variant']
  assert r['random_return'] == {'test_id': 5.0, 'test_ood': 2.0}
  assert all(type(v) is float for v in r['random_return'].values())
  assert set(r['timing']) == set(TIMING)
  assert [type(r['timing'][k]) for k in ('total_s', 'compile_s', 'env_steps', 'env_steps_per_s')
          ] == [float, float, int, float]
  for method, splits in r['methods'].items():
    assert list(splits) == ['test_id', 'test_ood']
    for split, entry in splits.items():
      assert set(entry) == {'start', 'final_return', 'auc', 'curve', 'normalized_score',
                            'steps_to_threshold'}
      for key in ('start', 'final_return', 'auc', 'normalized_score'):
        assert set(entry[key]) == STAT_KEYS
        assert all(type(v) is float for v in entry[key]['per_run'])
        assert len(entry[key]['per_run']) == TASKS * SEEDS
      returns = results[method][split]['returns']
      assert entry['final_return']['per_run'] == returns[:, -1].tolist()
      assert entry['start']['per_run'] == returns[:, 0].tolist()
      np.testing.assert_allclose(entry['auc']['per_run'],
                                 report.auc(results[method][split]['steps'], returns))
      assert set(entry['curve']) == CURVE_KEYS
      assert entry['curve']['steps'] == results[method][split]['steps'].tolist()
      np.testing.assert_allclose(entry['curve']['mean'], returns.mean(axis=0))
  assert len(r['methods']['oracle']['test_id']['curve']['steps']) == 7
  assert json.loads(json.dumps(r)) == r
  assert json.dumps(_build(_results())) == json.dumps(r)


def test_normalized_score_hand_computed():
  r = _build(_results())
  apb = r['methods']['apb']['test_id']['normalized_score']['per_run']
  # Run 3 is task 1: oracle task-1 mean (30 + 50) / 2 = 40, random 5, R = 25.
  assert apb[3] == pytest.approx((25 - 5) / (40 - 5))
  oracle = r['methods']['oracle']['test_id']['normalized_score']['per_run']
  assert oracle == pytest.approx([(10 - 5) / 10, (20 - 5) / 10, (30 - 5) / 35, (50 - 5) / 35])
  assert r['methods']['oracle']['test_ood']['normalized_score']['mean'] == pytest.approx(1.0)


def test_no_oracle_no_normalized_score():
  r = _build(_results(with_oracle=False))
  assert list(r['methods']) == ['apb', 'scratch', 'my_variant']
  for splits in r['methods'].values():
    for entry in splits.values():
      assert set(entry) == {'start', 'final_return', 'auc', 'curve', 'steps_to_threshold'}


def test_build_report_rejects_bad_shapes():
  results = _results()
  results['scratch']['test_ood']['returns'] = np.zeros((4, 3))  # steps has 4 entries
  with pytest.raises(ValueError, match=r"'scratch'.*'test_ood'"):
    _build(results)
  results = _results()
  results['apb']['test_id']['returns'] = np.zeros(4)  # 1-D
  with pytest.raises(ValueError, match=r"'apb'.*'test_id'"):
    _build(results)


# files --------------------------------------------------------------------------------


def _is_png(path):
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_steps_to_threshold_hand_computed_and_runs_that_never_reach_it_count():
  steps = np.array([0, 100, 200, 300])
  returns = np.array([[0., 5., 9., 9.],      # reaches 5 at 100
                      [6., 6., 6., 6.],      # at 0 (already there)
                      [0., 1., 2., 3.],      # never
                      [0., 0., 4., 5.]])     # at 300
  np.testing.assert_array_equal(report.steps_to_threshold(steps, returns, 5.0),
                                [100, 0, np.inf, 300])
  t = report.threshold_summary(steps, returns, 5.0)
  assert t == {'threshold': 5.0, 'fraction_reached': 0.75, 'median': 200.0,
               'per_run': [100.0, 0.0, None, 300.0]}
  assert report.threshold_summary(steps, returns, 9.0)['median'] is None   # 1 of 4 reach it


def test_report_states_how_many_times_fewer_steps_apb_needed_than_scratch(tmp_path):
  steps = np.array([0, 100, 200, 300, 400])
  scratch = np.array([[0., 1., 2., 3., 4.], [0., 1., 2., 3., 6.], [0., 1., 2., 5., 5.]])
  apb = np.array([[0., 5., 5., 5., 5.], [0., 0., 6., 6., 6.], [0., 0., 0., 0., 9.]])
  # scratch's mean final return is 5: apb reaches it at 100, 200, 400; scratch never, 400, 300
  results = {'apb': {'test_id': {'steps': steps, 'returns': apb}},
             'scratch': {'test_id': {'steps': steps, 'returns': scratch}}}
  r = report.build_report(results, task='t', profile='p', learner='sac', exploration='action',
                          seeds=1, random_return={'test_id': 0.0}, timing=TIMING)
  apb_t = r['methods']['apb']['test_id']['steps_to_threshold']
  scratch_t = r['methods']['scratch']['test_id']['steps_to_threshold']
  assert (apb_t['threshold'], apb_t['median'], apb_t['fraction_reached']) == (5.0, 200.0, 1.0)
  assert (scratch_t['median'], scratch_t['per_run']) == (400.0, [None, 400.0, 300.0])
  report.write_all(r, str(tmp_path))
  md = (tmp_path / 'report.md').read_text()
  assert ("median over runs: apb 200 steps, 100% of runs reached it; scratch 400 steps, 67% of "
          'runs reached it. apb needed 2.00x fewer steps than scratch.') in md


def test_write_all(tmp_path):
  r = _build(_results())
  written = report.write_all(r, str(tmp_path))
  names = ['report.json', 'curves.png', 'final_returns.png', 'normalized_scores.png', 'report.md']
  assert written == [str(tmp_path / n) for n in names]
  assert sorted(os.listdir(tmp_path)) == sorted(names)  # no temp files left behind
  with open(tmp_path / 'report.json') as f:
    assert json.load(f) == r
  for name in names:
    if name.endswith('.png'):
      assert os.path.getsize(tmp_path / name) > 1000 and _is_png(tmp_path / name)
  md = (tmp_path / 'report.md').read_text()
  for word in ['ant_legs', 'quick', 'ppo', 'gaussian', 'test_id', 'test_ood',
               'apb', 'scratch', 'oracle', 'my_variant', 'How to read this', 'normalized score',
               '(curves.png)', '(final_returns.png)', '(normalized_scores.png)']:
    assert word in md, word
  assert '2.1 min' in md  # 125 s of wall time
  apb = r['methods']['apb']['test_id']
  apb_final, start = apb['final_return'], apb['curve']['mean'][0]
  assert (f"| apb | {start:.2f} | {apb_final['mean']:.2f} [{apb_final['ci_low']:.2f}, "
          f"{apb_final['ci_high']:.2f}]") in md


def test_runs_figure_draws_a_row_per_run_and_a_column_per_split(tmp_path):
  both = _build(_results(with_oracle=False))
  results = _results(with_oracle=False)
  only_id = _build({m: {'test_id': results[m]['test_id']} for m in results})
  fig = report.runs_figure([('run a', both), ('run b', only_id)])
  axes = np.asarray(fig.axes).reshape(2, 2)
  assert [[ax.get_title() for ax in row] for row in axes] == [
      ['run a: test_id', 'run a: test_ood'], ['run b: test_id', '']]
  assert not axes[1, 1].axison          # run b has no test_ood: that panel is blank
  for ax, split in zip(axes[0], ('test_id', 'test_ood'), strict=True):
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {'scratch', 'my_variant', 'apb', 'random'}
    np.testing.assert_allclose(lines['apb'].get_ydata(),
                               both['methods']['apb'][split]['curve']['mean'])
  assert [t.get_text() for t in fig.legends[0].get_texts()] == [   # once, in the report's order
      'apb', 'scratch', 'my_variant', 'random']
  report.plot_runs([('run a', both)], str(tmp_path / 'runs.png'))
  assert _is_png(tmp_path / 'runs.png')
  with pytest.raises(ValueError, match='at least one'):
    report.runs_figure([])


def test_write_all_without_oracle(tmp_path):
  r = _build(_results(with_oracle=False))
  written = report.write_all(r, str(tmp_path))
  assert not (tmp_path / 'normalized_scores.png').exists()
  assert [os.path.basename(p) for p in written] == [
      'report.json', 'curves.png', 'final_returns.png', 'report.md']
  md = (tmp_path / 'report.md').read_text()
  assert 'normalized' not in md.lower()
  assert 'normalized_scores.png' not in md
  with pytest.raises(ValueError, match='oracle'):
    report.plot_normalized(r, str(tmp_path / 'n.png'))


def test_failed_write_keeps_old_file(tmp_path):
  path = tmp_path / 'report.json'
  path.write_text('old')

  def half_write(f):
    f.write(b'{"partial": ')
    raise RuntimeError('killed')

  with pytest.raises(RuntimeError):
    files.atomic_write(str(path), half_write)
  assert path.read_text() == 'old'
  assert os.listdir(tmp_path) == ['report.json']


def test_speedup_line_flags_scratch_ending_below_its_start(tmp_path):
  steps = np.array([0, 100, 200])
  scratch = np.array([[4., 1., 2.], [6., 1., 2.]])    # mean start 5, mean final 2
  apb = np.array([[4., 1., 2.], [6., 1., 3.]])
  results = {'apb': {'test_id': {'steps': steps, 'returns': apb}},
             'scratch': {'test_id': {'steps': steps, 'returns': scratch}}}
  r = report.build_report(results, task='t', profile='p', learner='sac', exploration='action',
                          seeds=1, random_return={'test_id': 0.0}, timing=TIMING)
  report.write_all(r, str(tmp_path))
  md = (tmp_path / 'report.md').read_text()
  assert 'apb starts at or above it, before any training.' in md   # both runs start above 2
  assert "Scratch ended below its mean start (5.00)" in md
  r['methods']['scratch']['test_id']['curve']['mean'][0] = 1.0   # a start below the final
  report.write_all(r, str(tmp_path))
  assert 'ended below its mean start' not in (tmp_path / 'report.md').read_text()
