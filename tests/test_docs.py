"""README.md and docs/*.md stay true: their code parses (and the cheap example runs), their links
resolve, the config flags they name exist, and what is generated equals what the code and the
kept run directories give now (experiments/make_docs.py; `make docs` rewrites it)."""

import ast
import os
import pathlib
import re
import subprocess

import chex
import jax
import pytest

from apb_jax import config_fields, schema
from experiments import make_docs, summarize

ROOT = pathlib.Path(__file__).parents[1]
DOCS = [ROOT / p for p in make_docs.doc_files()]
FENCE = re.compile(r'^```([\w-]*)\n(.*?)^```$', re.S | re.M)
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
FLAG = re.compile(r'--config\.([a-z_][a-z0-9_.]*[a-z0-9_])(\.\*)?(?:=([^\s`"\'\\)]*))?')
RUNS = 'experiments/measured/runs'


def _text(path) -> str:
  return pathlib.Path(path).read_text()


def _blocks(lang: tuple):
  """(file name, block text) of every fenced block in `lang` of the docs."""
  return [(path.name, m.group(2)) for path in DOCS for m in FENCE.finditer(_text(path))
          if m.group(1) in lang]


def _prose(text: str) -> str:
  """`text` without its fenced blocks and inline code spans (no links or headings there)."""
  return re.sub(r'`[^`\n]*`', '', FENCE.sub('', text))


def slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(text: str) -> set:
  seen, out = {}, set()
  for heading in re.findall(r'^#{1,6} (.+)$', FENCE.sub('', text), re.M):
    base = slug(heading)
    out.add(base if base not in seen else f'{base}-{seen[base]}')
    seen[base] = seen.get(base, 0) + 1
  return out


def broken_links(path: pathlib.Path, text: str) -> list[str]:
  """Every relative link of `text` (a doc at `path`) whose file, or heading, does not exist."""
  out = []
  for target in LINK.findall(_prose(text)):
    if re.match(r'[a-z]+:', target):      # http:, https:, mailto:
      continue
    file, _, anchor = target.partition('#')
    dest = (path.parent / file).resolve() if file else path
    if not dest.exists():
      out.append(f'{path.name}: {target} (no such file)')
    elif anchor and dest.suffix == '.md' and anchor not in anchors(dest.read_text()):
      out.append(f'{path.name}: {target} (no heading #{anchor} in {dest.name})')
  return out


def _field(dotted: str):
  node = config_fields.FIELDS
  for part in dotted.split('.'):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


# -- the README is short; the code parses ----------------------------------------------------

def test_readme_is_at_most_250_lines():
  lines = _text(ROOT / 'README.md').count('\n')
  assert lines <= 250, f'README.md has {lines} lines; move detail into docs/ (at most 250)'


def test_every_python_block_parses():
  blocks = _blocks(('python',))
  assert len(blocks) >= 4, blocks
  for name, code in blocks:
    try:
      ast.parse(code)
    except SyntaxError as e:
      pytest.fail(f'a python block of {name} does not parse: {e}\n{code}')


def test_every_shell_block_parses_and_names_real_targets_and_families():
  blocks = _blocks(('bash', 'sh', 'shell'))
  assert len(blocks) >= 8, blocks
  targets = set(re.findall(r'^([a-z][\w-]*):', _text(ROOT / 'Makefile'), re.M))
  for name, code in blocks:
    done = subprocess.run(['bash', '-n'], input=code, capture_output=True, text=True)
    assert done.returncode == 0, f'a shell block of {name} does not parse: {done.stderr}\n{code}'
    for target in re.findall(r'(?:^|\s)make ([a-z][\w-]*)', code):
      assert target in targets, f'{name}: `make {target}` is not a Makefile target'
    for family in re.findall(r'TASK=(\w+)', code):
      assert (ROOT / 'experiments' / 'configs' / f'{family}.py').exists(), f'{name}: TASK={family}'


def test_every_relative_link_and_anchor_resolves():
  broken = [b for path in DOCS for b in broken_links(path, _text(path))]
  assert not broken, 'broken links:\n' + '\n'.join(broken)


def test_the_link_check_catches_a_missing_file_and_a_missing_heading():
  doc = ROOT / 'docs' / 'results.md'
  assert broken_links(doc, '[x](design.md#task-families) [y](../README.md)') == []
  assert len(broken_links(doc, '[x](nowhere.md) [y](design.md#no-such-heading)')) == 2


def test_every_config_flag_named_in_the_docs_exists():
  bad = []
  for path in DOCS:
    for dotted, group, value in FLAG.findall(_text(path)):   # group: '.*' after a group's name
      field = _field(dotted)
      if field is None or isinstance(field, dict) != bool(group):
        bad.append(f'{path.name}: --config.{dotted} is not a config field')
      elif value and isinstance(field, (schema.Choice, schema.Names)) and '<' not in value:
        if field.rule(value) is not None:
          bad.append(f'{path.name}: --config.{dotted}={value} must be {field.rule(value)}')
  assert not bad, '\n'.join(bad)


# -- generated text equals what generates it now ---------------------------------------------

def test_configuration_md_is_what_config_fields_generates():
  expected = make_docs.configuration_md()
  assert _text(ROOT / make_docs.CONFIGURATION) == expected, (
      'docs/configuration.md differs from apb_jax/config_fields.py: run `make docs`')
  for dotted in ('rl.num_envs', 'adapt.critic', 'baselines.pearl.kl_weight', 'seed'):
    assert f'`--config.{dotted}`' in expected


def test_every_generated_table_is_what_summarize_prints_now():
  regions = {path.name: make_docs.regions(_text(path)) for path in DOCS}
  assert len(regions['results.md']) >= 5 and regions['README.md'], regions.keys()
  for path in DOCS:
    text = _text(path)
    for command, body in make_docs.regions(text):
      now = '\n' + make_docs.generate(command) + '\n'
      assert body == now, (f'{path.name}: the table of `{command}` differs from what it '
                           'prints now: run `make docs`')
      if path.parent.name == 'docs':   # the command is written out where a reader sees it
        assert f'`{command}`' in text, f'{path.name}: write `{command}` above its table'


def test_the_six_family_tables_take_in_every_default_run_kept():
  command = next(c for c, _ in make_docs.regions(_text(ROOT / 'docs' / 'results.md'))
                 if '--table=runs' in c)
  kept = sorted(p.name for p in (ROOT / RUNS).glob('*_default_2026-*'))
  assert len(kept) >= 5
  table = make_docs.generate(command)
  assert [line.split(' | ')[0][2:] for line in table.splitlines()[2:]] == kept


def test_a_changed_number_in_a_generated_table_is_caught():
  text = _text(ROOT / 'docs' / 'results.md')
  command, body = make_docs.regions(text)[0]
  number = re.search(r'-?\d+\.\d', body).group(0)
  tampered = text.replace(body, body.replace(number, number + '1', 1), 1)
  assert tampered != text and make_docs.regenerate(tampered) == make_docs.regenerate(text)
  assert make_docs.regenerate(tampered) != tampered


# -- summarize's tables and patterns ---------------------------------------------------------

def test_summarize_expands_patterns_sorted_and_names_a_pattern_that_matches_nothing(tmp_path):
  runs = summarize.run_dirs([f'{ROOT / RUNS}/cheetah_dir_warm_*', str(ROOT / RUNS / 'x')])
  assert [os.path.basename(r) for r in runs] == [
      'cheetah_dir_warm_alpha_2026-12-04', 'cheetah_dir_warm_delay_2026-12-04',
      'cheetah_dir_warm_delay_alpha_2026-12-04', 'x']
  with pytest.raises(ValueError, match='no run directory matches'):
    summarize.run_dirs([str(tmp_path / 'none_*')])
  with pytest.raises(ValueError, match='generated region must name'):
    make_docs.parse_command('python -m experiments.run x')
  with pytest.raises(ValueError, match='not an option'):
    make_docs.parse_command('python -m experiments.summarize --out=x runs/a')


def test_summarize_finals_dirs_and_runs_tables_agree_with_the_full_table():
  dirs = summarize.run_dirs([f'{ROOT / RUNS}/hopper_from_walker_2026-12-05',    # 3 methods
                             f'{ROOT / RUNS}/hopper_params_default_2026-12-05'])  # 5 methods
  reports = summarize.results_table.reports(dirs)
  full = summarize.render(reports, 'full').splitlines()
  named = summarize.render(reports, 'dirs').splitlines()
  finals = summarize.render(reports, 'finals').splitlines()
  runs = summarize.render(reports, 'runs').splitlines()
  assert len(named) == len(full) == 2 + 2 + 10 and len(runs) == 2 + len(dirs)
  assert all(n.endswith(f[1:]) for n, f in zip(named[2:], full[2:], strict=True))
  assert named[2].startswith('| hopper_from_walker_2026-12-05 | hopper_params | fresh | walker')
  # finals: a row per run and split, a column per method, each cell the full table's final
  header = [c.strip() for c in finals[0].strip('|').split('|')]
  assert header == ['run', 'split', 'apb', 'apb_warm', 'apb_randominit', 'scratch', 'finetune']
  cells = {}
  for line in finals[2:]:
    run, split, *values = [c.strip() for c in line.strip('|').split('|')]
    cells.update({(run, split, m): v for m, v in zip(header[2:], values, strict=True)})
  for line in named[2:]:
    c = [x.strip() for x in line.strip('|').split('|')]
    run, split, method, final = c[0], c[4], c[5], c[8]
    assert cells[(run, split, method)] == final
  assert cells[('hopper_from_walker_2026-12-05', 'test_id', 'scratch')] == '-'
  assert 'walker_params' not in runs[2] and '| - |' in runs[2]   # no meta-training of its own
  assert '1 apb vs scratch (test_id): 150.1, insufficient' in runs[3]


# -- the cheap example runs ------------------------------------------------------------------

def test_the_design_example_runs_and_keeps_the_backbone_frozen():
  text = _text(ROOT / 'docs' / 'design.md')
  code = re.search(r'^## Using the parts directly\n.*?^```python\n(.*?)^```$', text,
                   re.S | re.M).group(1)
  scope = {}
  exec(compile(code, 'docs/design.md', 'exec'), scope)   # noqa: S102
  chex.assert_trees_all_equal(scope['params']['backbone'], scope['backbone'])
  chex.assert_shape(scope['state'].obs, (3, scope['family'].obs_size))
  chex.assert_tree_shape_prefix(scope['params']['adapters'], (3,))
  before = jax.tree.leaves(scope['adapters'])
  after = jax.tree.leaves(scope['params']['adapters'])
  assert any((a != b).any() for a, b in zip(before, after, strict=True))


def test_field_notes_take_the_comment_above_a_line_and_the_one_at_its_end():
  source = ('FIELDS = {\n'
            "    'a': Int(1),   # about a\n"
            '    # about the group g,\n'
            '    # on two lines\n'
            "    'g': {'b': Int(2), 'c': Int(3),   # about c\n"
            '          # about d\n'
            "          'd': Int(4)},\n"
            '}\n')
  assert make_docs.field_notes(source) == {
      'a': 'about a', 'g': 'about the group g, on two lines', 'g.c': 'about c',
      'g.d': 'about d'}
