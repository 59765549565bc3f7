"""The APB policy: shapes, carrying a backbone, determinism, nonlinearity."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from apb_jax import policy

CONFIG = policy.PolicyConfig(widths=(32, 64, 48))


def _key(i=0):
  return jax.random.PRNGKey(i)


@pytest.mark.parametrize('obs_size,action_size', [(17, 6), (29, 8), (11, 3), (1, 1)])
@pytest.mark.parametrize('batch', [(), (5,), (3, 4)])
def test_apply_shapes_dtypes_and_ranges(obs_size, action_size, batch):
  params = policy.init_params(_key(), obs_size, action_size, CONFIG)
  obs = jax.random.normal(_key(1), (*batch, obs_size))
  out = policy.apply(params['backbone'], params['adapters'], obs, CONFIG)
  chex.assert_shape([out.loc, out.scale, out.action], (*batch, action_size))
  chex.assert_type([out.loc, out.scale, out.action], jnp.float32)
  assert (out.scale > 0).all() and (jnp.abs(out.action) < 1).all()
  np.testing.assert_allclose(out.action, jnp.tanh(out.loc))


def test_param_layout_matches_the_design():
  params = policy.init_params(_key(), 17, 6, CONFIG)
  shapes = jax.tree.map(jnp.shape, params)
  assert shapes == {
      'backbone': {'dense_0': {'kernel': (32, 64), 'bias': (64,)},
                   'dense_1': {'kernel': (64, 48), 'bias': (48,)}},
      'adapters': {'in': {'kernel': (17, 32), 'bias': (32,)},
                   'out': {'kernel': (48, 12), 'bias': (12,)}},
  }


def test_one_backbone_carries_between_families_of_different_sizes():
  backbone = policy.init_backbone(_key(), CONFIG)
  cheetah = policy.init_adapters(_key(1), 17, 6, CONFIG)
  ant = policy.init_adapters(_key(2), 29, 8, CONFIG)
  before = jax.tree.map(jnp.copy, backbone)
  out_c = policy.apply(backbone, cheetah, jnp.ones((4, 17)), CONFIG)
  out_a = policy.apply(backbone, ant, jnp.ones((4, 29)), CONFIG)
  chex.assert_shape(out_c.action, (4, 6))
  chex.assert_shape(out_a.action, (4, 8))
  chex.assert_trees_all_equal(backbone, before)


def test_adapters_of_another_width_are_rejected_with_the_fix():
  backbone = policy.init_backbone(_key(), CONFIG)
  other = policy.init_adapters(_key(1), 17, 6, policy.PolicyConfig(widths=(16, 48)))
  with pytest.raises(ValueError, match='same PolicyConfig.widths'):
    policy.apply(backbone, other, jnp.ones(17), CONFIG)


def test_bad_config_is_rejected_with_the_fix():
  with pytest.raises(ValueError, match='widths must hold'):
    policy.PolicyConfig(widths=(64,))
  with pytest.raises(ValueError, match='choose one of'):
    policy.PolicyConfig(activation='gelu6')


def test_init_scale_sets_the_fresh_policy_std_and_zero_keeps_the_default():
  obs = jax.random.normal(_key(1), (5, 17))
  default = policy.init_params(_key(), 17, 6, CONFIG)
  narrow_config = policy.PolicyConfig(widths=CONFIG.widths, init_scale=0.1)
  narrow = policy.init_params(_key(), 17, 6, narrow_config)
  out = policy.apply(narrow['backbone'], narrow['adapters'], obs, narrow_config)
  bias = narrow['adapters']['out']['bias'][6:]
  np.testing.assert_allclose(jax.nn.softplus(bias) + CONFIG.min_scale, 0.1, rtol=1e-5)
  np.testing.assert_allclose(out.scale, 0.1, rtol=0.05)   # the 1e-4-gain kernel moves it little
  out0 = policy.apply(default['backbone'], default['adapters'], obs, CONFIG)
  np.testing.assert_array_equal(default['adapters']['out']['bias'], 0.0)
  np.testing.assert_allclose(out0.scale, np.log(2.0) + CONFIG.min_scale, rtol=0.05)
  # Only the scale half of the output bias differs: same backbone, kernels and means.
  chex.assert_trees_all_equal(narrow['backbone'], default['backbone'])
  chex.assert_trees_all_equal(narrow['adapters']['in'], default['adapters']['in'])
  chex.assert_trees_all_equal(narrow['adapters']['out']['bias'][:6],
                              default['adapters']['out']['bias'][:6])
  np.testing.assert_array_equal(out.loc, out0.loc)
  with pytest.raises(ValueError,
                     match=r'PolicyConfig.init_scale=0.0001 must be 0 \(the default init\)'):
    policy.PolicyConfig(init_scale=1e-4)


def test_same_key_same_params_and_outputs_different_key_different():
  a = policy.init_params(_key(3), 11, 3, CONFIG)
  b = policy.init_params(_key(3), 11, 3, CONFIG)
  chex.assert_trees_all_equal(a, b)
  obs = jax.random.normal(_key(4), (8, 11))
  chex.assert_trees_all_equal(policy.apply(a['backbone'], a['adapters'], obs, CONFIG),
                              policy.apply(b['backbone'], b['adapters'], obs, CONFIG))
  c = policy.init_params(_key(5), 11, 3, CONFIG)
  assert not np.allclose(a['backbone']['dense_0']['kernel'], c['backbone']['dense_0']['kernel'])
  rng = _key(6)
  out = policy.apply(a['backbone'], a['adapters'], obs, CONFIG)
  chex.assert_trees_all_equal(policy.sample_and_log_prob(rng, out),
                              policy.sample_and_log_prob(rng, out))


def test_backbone_applies_activation_before_its_first_layer():
  # With relu, any input z <= 0 is mapped to g(z) = 0 before dense_0, so the
  # features equal those at z = 0. Without that activation W_in and dense_0
  # would compose into one linear map.
  backbone = policy.init_backbone(_key(), CONFIG)
  neg = -jnp.abs(jax.random.normal(_key(1), (5, 32)))
  chex.assert_trees_all_close(policy.backbone_features(backbone, neg),
                              jnp.broadcast_to(policy.backbone_features(backbone, jnp.zeros(32)), (5, 48)))


def test_policy_is_not_affine_in_the_observation():
  config = policy.PolicyConfig(widths=(16, 16), activation='tanh')
  params = policy.init_params(_key(7), 4, 2, config)
  params['adapters']['out']['kernel'] *= 1e3   # make the mean visibly nonzero

  def f(obs):
    return policy.apply(params['backbone'], params['adapters'], obs, config).loc
  x, y = jax.random.normal(_key(8), (2, 4))
  assert jnp.abs(f(x + y) + f(jnp.zeros(4)) - f(x) - f(y)).max() > 1e-3


def test_log_prob_matches_change_of_variables():
  out = policy.PolicyOutput(loc=jnp.array([[0.3, -0.2]]), scale=jnp.array([[0.5, 1.2]]),
                            action=jnp.tanh(jnp.array([[0.3, -0.2]])))
  action, log_prob = policy.sample_and_log_prob(_key(9), out)
  u = jnp.arctanh(action)
  normal = -0.5 * ((u - out.loc) / out.scale) ** 2 - jnp.log(out.scale) - 0.5 * jnp.log(2 * jnp.pi)
  expected = jnp.sum(normal - jnp.log(1 - jnp.tanh(u) ** 2), axis=-1)
  np.testing.assert_allclose(log_prob, expected, rtol=1e-4)
  chex.assert_shape(log_prob, (1,))
