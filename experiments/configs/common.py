"""The fields every family's config has, and the three profiles.

    --config=experiments/configs/ant_goal.py:default --config.seed=3 --config.methods=apb,scratch

Profiles (budgets in env steps per task):
  smoke    the whole pipeline in a few minutes on a 2-core CPU: tiny networks,
           tiny budgets, every method (the meta-RL baselines included); checks
           that everything runs, not that anything learns.
  default  one family in under an hour on a 2-core CPU, with learning a reader
           can see: meta-training on 8 tasks, adaptation on 4 tasks x 2 seeds
           per split; the APB methods (add baselines with --config.methods=...,rl2).
  paper    GPU-scale: meta-training 1,024,000 steps per task, adaptation 204,800
           steps per task, 5 seeds, the oracle (5x budget) and the baselines on. (Budgets are
           multiples of 512 so PPO's rollouts fit them too.)
"""

from __future__ import annotations

import ml_collections

PROFILES = ('smoke', 'default', 'paper')


def get_config(task: str, profile: str) -> ml_collections.ConfigDict:
  if profile not in PROFILES:
    raise ValueError(f'unknown profile {profile!r}; choose one of {list(PROFILES)} '
                     f'(e.g. --config=experiments/configs/{task}.py:smoke).')
  c = ml_collections.ConfigDict()
  c.task = task
  c.profile = profile
  c.seed = 0
  c.methods = 'apb,apb_randominit,scratch,finetune'
  c.splits = 'test_id,test_ood'
  c.learner = 'sac'              # sac | td3 | ppo (ppo reads its settings from c.ppo)
  c.exploration = 'action'       # action | param (the adaptation protocol)
  c.backbone_from = ''           # a run directory whose meta-trained backbone to reuse
  c.oracle_factor = 5            # the oracle's budget, in multiples of adapt.total_steps

  # core_size > 0 adds a GRU between backbone and output adapter (PPO only; see policy.py).
  c.policy = ml_collections.ConfigDict({'widths': (256, 256, 256), 'activation': 'relu',
                                        'core_size': 0})
  # Learner settings shared by every stage (apb_jax.learners.LearnerConfig fields).
  c.rl = ml_collections.ConfigDict({
      'num_envs': 16, 'batch_size': 256, 'grad_updates_per_step': 4, 'buffer_size': 1_000_000,
      'warmup_steps': 2_048, 'eval_episodes': 4, 'gamma': 0.99, 'tau': 0.005,
      'actor_lr': 3e-4, 'critic_lr': 3e-4, 'alpha_lr': 3e-4, 'init_alpha': 1.0,
      'reward_scale': 1.0, 'normalize_obs': True, 'critic_widths': (256, 256)})
  # PPO's settings (apb_jax.learners.PPOConfig fields), used when --config.learner=ppo.
  # One rollout is num_envs * unroll_length env steps per task; every budget and
  # eval_every must be a multiple of it. lr 1e-3, measured: cheetah_vel test_id, 4 tasks,
  # 30,720 steps, mean final eval return from -273 (mode all / adapters): lr 3e-4
  # -270 / -272 (only the std shrinks), 1e-3 -156 / -197, 3e-3 -185 / -118. The linear
  # adapters want a larger step than the whole network; 1e-3 lets both learn.
  c.ppo = ml_collections.ConfigDict({
      'num_envs': 16, 'unroll_length': 32, 'epochs': 8, 'num_minibatches': 4, 'lr': 1e-3,
      'max_grad_norm': 0.5, 'gamma': 0.99, 'gae_lambda': 0.95, 'clip_eps': 0.2,
      'value_coef': 0.5, 'entropy_coef': 1e-3, 'normalize_advantage': True,
      'reward_scale': 1.0, 'normalize_obs': True, 'value_widths': (256, 256),
      'core_reset_episodes': 1})
  c.meta = ml_collections.ConfigDict({
      'method': 'rl',            # rl: multi-task SAC/TD3 with a shared backbone; bc: distil experts
      'num_tasks': 8, 'total_steps': 204_800, 'eval_every': 20_480,
      'distill': {'steps': 2_000, 'batch_size': 256, 'lr': 1e-3, 'demo_steps': 8_192,
                  'behaviour_noise': 0.2}})
  c.adapt = ml_collections.ConfigDict({
      'num_tasks': 4, 'seeds': 2, 'total_steps': 30_720, 'eval_every': 3_072})
  # Meta-RL baselines (apb_jax/baselines), run when named in c.methods. They meta-train on
  # the same train tasks with meta.total_steps * meta_factor env steps per task.
  # rl2: PPO (c.ppo's settings) with a GRU of core_size on trials of trial_episodes episodes.
  # pearl: SAC (c.rl's settings) with oyster's encoder settings (configs/default.py); the next
  # obs in the context, which the dynamics families need (oyster issue #4).
  # maml: ProMP's settings (run_scripts/pro-mp_run_mujoco.py); num_envs episodes per rollout.
  c.baselines = ml_collections.ConfigDict({
      'meta_factor': 1,
      'rl2': {'trial_episodes': 2, 'core_size': 128},
      'pearl': {'latent_size': 5, 'kl_weight': 0.1, 'context_size': 100,
                'encoder_widths': (200, 200, 200), 'encoder_lr': 3e-4, 'use_next_obs': True},
      'maml': {'num_envs': 20, 'inner_lr': 0.1, 'lr': 1e-3, 'outer_steps': 5, 'clip_eps': 0.3,
               'inner_kl_coef': 5e-4, 'gamma': 0.99, 'normalize_obs': True}})

  if profile == 'smoke':
    c.methods += ',rl2,pearl,maml'      # every method, the meta-RL baselines included
    c.policy.widths = (32, 32)
    c.rl.update(num_envs=8, batch_size=64, grad_updates_per_step=1, warmup_steps=128,
                eval_episodes=1, critic_widths=(32, 32))
    c.ppo.update(num_envs=8, unroll_length=32, num_minibatches=2, value_widths=(32, 32))
    c.meta.update(num_tasks=2, total_steps=1_024, eval_every=512)
    c.meta.distill.update(steps=50, batch_size=64, demo_steps=256)
    c.adapt.update(num_tasks=2, seeds=1, total_steps=512, eval_every=256)
    c.baselines.rl2.core_size = 16
    c.baselines.maml.num_envs = 1        # 2 x 1 x 200 env steps per iteration fit eval_every
    c.baselines.pearl.update(encoder_widths=(32, 32), context_size=16)
  elif profile == 'paper':
    c.methods += ',oracle,rl2,pearl,maml'
    c.meta.update(num_tasks=16, total_steps=1_024_000, eval_every=51_200)
    c.meta.distill.update(steps=20_000, demo_steps=100_000)
    c.adapt.update(num_tasks=8, seeds=5, total_steps=204_800, eval_every=10_240)
    c.rl.update(grad_updates_per_step=1, num_envs=16)
  return c
