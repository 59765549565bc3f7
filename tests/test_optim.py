"""Which leaves train: adapters_only freezes the backbone bit for bit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.core import FrozenDict

from apb_jax import optim, policy

CONFIG = policy.PolicyConfig(widths=(16, 32, 16))


def _params(frozen=False):
  p = policy.init_params(jax.random.PRNGKey(0), 5, 2, CONFIG)
  return FrozenDict(p) if frozen else p


def _loss(params, obs, target):
  out = policy.apply(params['backbone'], params['adapters'], obs, CONFIG)
  return jnp.mean(jnp.square(out.loc - target))


def _train(params, tx, steps=50):
  obs = jax.random.normal(jax.random.PRNGKey(1), (64, 5))
  target = jnp.tanh(obs[:, :2] * 2.0)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def update(params, opt_state):
    loss, grads = jax.value_and_grad(_loss)(params, obs, target)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = tx.init(params)
  losses = []
  for _ in range(steps):
    params, opt_state, loss = update(params, opt_state)
    losses.append(float(loss))
  return params, opt_state, losses


def _array_sizes(tree):
  return sorted(x.size for x in jax.tree.leaves(tree) if hasattr(x, 'size') and x.ndim > 0)


@pytest.mark.parametrize('frozen', [False, True], ids=['dict', 'FrozenDict'])
def test_adapters_only_adam_50_steps_leave_backbone_bit_for_bit_and_hold_no_moments(frozen):
  chex.clear_trace_counter()
  params = _params(frozen)
  tx = optim.adapters_only(optax.adam(1e-2))
  new, opt_state, losses = _train(params, tx)
  chex.assert_trees_all_equal(new['backbone'], params['backbone'])
  for before, after in zip(jax.tree.leaves(params['adapters']), jax.tree.leaves(new['adapters']), strict=True):
    assert not np.array_equal(before, after)
  assert losses[-1] < 0.5 * losses[0]
  # Adam keeps mu and nu for each adapter leaf, and nothing of backbone size.
  adapter_sizes = _array_sizes(params['adapters'])
  assert _array_sizes(opt_state) == sorted(adapter_sizes * 2)


def test_all_params_trains_the_backbone_too():
  chex.clear_trace_counter()
  params = _params()
  new, opt_state, _ = _train(params, optim.all_params(optax.adam(1e-2)), steps=5)
  for before, after in zip(jax.tree.leaves(params), jax.tree.leaves(new), strict=True):
    assert not np.array_equal(before, after)
  assert _array_sizes(opt_state) == sorted(_array_sizes(params) * 2)


def test_labels_come_from_tree_paths_at_any_depth():
  params = {'actor': _params(), 'extra': {'adapters': {'w': jnp.ones(3)}}}
  labels = optim.trainable_labels(params)
  assert set(jax.tree.leaves(labels['actor']['backbone'])) == {optim.FREEZE}
  assert set(jax.tree.leaves(labels['actor']['adapters'])) == {optim.TRAIN}
  assert labels['extra']['adapters']['w'] == optim.TRAIN


def test_leaf_outside_the_layout_is_an_error_naming_the_fix():
  params = dict(_params(), log_std=jnp.zeros(2))
  with pytest.raises(ValueError, match=r"\['log_std'\].*lay params out as"):
    optim.adapters_only(optax.sgd(0.1)).init(params)


FORMS = [f for f in policy.ADAPTER_FORMS if f != 'linear']


@pytest.mark.parametrize('form', policy.ADAPTER_FORMS)
def test_every_adapter_form_leaves_the_backbone_bit_for_bit_and_trains_only_its_leaves(form):
  """Each form (policy.ADAPTER_FORMS) under adapters_only(frozen=policy.frozen_adapters): 50
  Adam steps leave the backbone and the form's frozen adapter keys bit for bit, move every
  other adapter leaf, lower the loss, keep Adam moments for exactly the trained leaves, and
  count_trainable counts those."""
  config = policy.PolicyConfig(widths=(16, 32, 16), adapter=form, lora_rank=2)
  params = policy.init_params(jax.random.PRNGKey(0), 5, 2, config)
  params['adapters']['out']['kernel'] = params['adapters']['out']['kernel'] * 100   # let it move
  frozen = policy.frozen_adapters(config)
  obs = jax.random.normal(jax.random.PRNGKey(1), (64, 5))
  target = jnp.tanh(obs[:, :2] * 2.0)
  tx = optim.adapters_only(optax.adam(1e-2), frozen)
  def loss(p):
    return jnp.mean(jnp.square(policy.apply(p['backbone'], p['adapters'], obs, config).loc - target))

  update = jax.jit(lambda p, s: (lambda g: (lambda u: (optax.apply_updates(p, u[0]), u[1]))(
      tx.update(g, s, p)))(jax.grad(loss)(p)))
  new, state = params, tx.init(params)
  for _ in range(50):
    new, state = update(new, state)
  chex.assert_trees_all_equal(new['backbone'], params['backbone'])
  for key in params['adapters']:
    moved = [not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(params['adapters'][key]), jax.tree.leaves(new['adapters'][key]), strict=True)]
    assert all(moved) if key not in frozen else not any(moved), (form, key)
  assert float(loss(new)) < 0.7 * float(loss(params)), form
  trained = {k: v for k, v in params['adapters'].items() if k not in frozen}
  assert _array_sizes(state) == sorted(_array_sizes(trained) * 2)
  assert optim.count_trainable(params, frozen) == sum(x.size for x in jax.tree.leaves(trained))
  expected = {'linear': 5 * 16 + 16 + 16 * 4 + 4, 'in_only': 5 * 16 + 16, 'out_only': 16 * 4 + 4,
              'lora': 5 * 16 + 16 + 16 * 4 + 4 + (16 * 2 + 2 * 32) + (32 * 2 + 2 * 16),
              'film': 5 * 16 + 16 + 16 * 4 + 4 + 2 * (32 + 16)}[form]
  assert optim.count_trainable(params, frozen) == expected


@pytest.mark.parametrize('form', FORMS)
def test_every_adapter_form_starts_as_the_linear_policy(form):
  """with_form adds the form's leaves at the start that leaves the function unchanged, so an
  adapter origin saved by (linear) meta-training starts every form at the same policy."""
  linear = policy.PolicyConfig(widths=(16, 32, 16))
  config = policy.PolicyConfig(widths=(16, 32, 16), adapter=form)
  params = policy.init_params(jax.random.PRNGKey(0), 5, 2, linear)
  adapters = policy.with_form(params['adapters'], jax.random.PRNGKey(3), config)
  obs = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
  chex.assert_trees_all_close(policy.apply(params['backbone'], adapters, obs, config),
                              policy.apply(params['backbone'], params['adapters'], obs, linear),
                              atol=1e-6)
  assert set(adapters) - set(params['adapters']) == ({form} if form in ('lora', 'film') else set())
