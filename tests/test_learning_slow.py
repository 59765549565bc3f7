"""Learning on a real Brax family at a small budget (slow: `make test-all`)."""

import jax
import numpy as np
import pytest

from apb_jax import policy, tasks
from apb_jax.learners import LearnerConfig, PPOConfig, make_train

pytestmark = pytest.mark.slow


def _train_two_tasks(family, config):
  """2 train tasks, a random backbone and fresh adapters; returns the TrainResult."""
  k = 2
  task_batch = family.sample(jax.random.PRNGKey(0), k, 'train')
  params = {'backbone': policy.init_backbone(jax.random.PRNGKey(1), config.policy),
            'adapters': jax.vmap(lambda r: policy.init_adapters(
                r, family.obs_size, family.action_size, config.policy))(
                    jax.random.split(jax.random.PRNGKey(2), k))}
  return make_train(config, family).train(jax.random.PRNGKey(3), task_batch, params,
                                          show_progress=False)


TD3_XFAIL = pytest.mark.xfail(
    strict=True,
    reason='measured 2026-11-24: TD3 in adapters mode on a random backbone does not learn '
           'cheetah_dir in 24k steps at these settings (eval return 0 -> -30); open problem')


@pytest.mark.parametrize('algo', ['sac', pytest.param('td3', marks=TD3_XFAIL)])
def test_adapters_on_a_random_frozen_backbone_learn_cheetah_dir(algo):
  """APB-randominit: only the linear adapters train, the return must rise."""
  family = tasks.make('cheetah_dir')
  config = LearnerConfig(
      algo=algo, mode='adapters', policy=policy.PolicyConfig(widths=(128, 128, 128)),
      critic_widths=(128, 128), total_steps=24_576, num_envs=16, eval_every=4096,
      warmup_steps=2048, grad_updates_per_step=2, batch_size=256, buffer_size=32_768,
      actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3, init_alpha=0.2)
  result = _train_two_tasks(family, config)
  initial, final = result.curves[:, 0], result.curves[:, -1]
  print(algo, 'eval return per task:', np.round(result.curves, 1))
  # A standing cheetah earns ~0; +30 over the 200-step episode means a sustained
  # forward speed of ~0.15 m/s net of control cost. Measured for SAC: 0 -> +65 / +42.
  assert (final > initial + 30).all(), result.curves


@pytest.mark.parametrize('mode', ['adapters', 'all'])
def test_ppo_learns_cheetah_dir(mode):
  """PPO with only the adapters on a random frozen backbone (APB-randominit), and with
  everything training (scratch): the return must rise."""
  family = tasks.make('cheetah_dir')
  config = PPOConfig(
      mode=mode, policy=policy.PolicyConfig(widths=(128, 128, 128)), value_widths=(128, 128),
      total_steps=102_400, num_envs=32, unroll_length=32, eval_every=20_480, epochs=8,
      num_minibatches=4, lr=1e-3, gamma=0.99)
  result = _train_two_tasks(family, config)
  initial, final = result.curves[:, 0], result.curves[:, -1]
  print('ppo', mode, 'eval return per task:', np.round(result.curves, 1))
  assert (final > initial + 30).all(), result.curves
