"""The README's Python example runs and does what its comments say."""

import pathlib
import re

import chex
import jax


def test_readme_api_example_runs_and_keeps_backbone_frozen():
  text = (pathlib.Path(__file__).parents[1] / 'README.md').read_text()
  code = re.search(r'## Python API\n\n```python\n(.*?)```', text, re.S).group(1)
  scope = {}
  exec(compile(code, 'README.md', 'exec'), scope)   # noqa: S102
  chex.assert_trees_all_equal(scope['params']['backbone'], scope['backbone'])
  chex.assert_shape(scope['state'].obs, (3, scope['family'].obs_size))
  chex.assert_tree_shape_prefix(scope['params']['adapters'], (3,))
  before = jax.tree.leaves(scope['adapters'])
  after = jax.tree.leaves(scope['params']['adapters'])
  assert any((a != b).any() for a, b in zip(before, after, strict=True))
