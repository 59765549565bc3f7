"""Every field of an experiment's config, with its default and its valid values.

    config = config_fields.defaults()     # the `default` profile's base, before a family's changes
    schema.problems(config, FIELDS)       # what `run_config.validate` checks first

Profiles and family changes live in `experiments/configs/` (`common.py`, `<family>.py`);
a field that a later change adds is declared here, with its rule, or the config
is refused. Budgets are env steps per task. Rules that tie fields together
(budgets that divide into rollouts and evaluations, a buffer that holds a
batch) are checked by the learner configs, in the same `validate` pass.
"""

from __future__ import annotations

from apb_jax import adapt, baselines, claims, meta_train, policy, schema
from apb_jax.learners.config import ALGOS, EXPLORATIONS
from apb_jax.schema import Choice, Flag, Int, Names, Real, Text, Widths

PROFILES = ('smoke', 'default', 'paper')
SPLITS = ('test_id', 'test_ood')
METHOD_NAMES = (*adapt.METHODS, *baselines.NAMES)

_LR = dict(above=0.0)          # learning rates, temperatures, scales: > 0
_UNIT = dict(low=0.0, high=1.0)

FIELDS = {
    'task': Text(''),                       # the family (checked against apb_jax.tasks.names())
    'profile': Choice('default', choices=PROFILES),
    'seed': Int(0, low=0),
    'methods': Names('apb,apb_warm,apb_randominit,scratch,finetune', choices=METHOD_NAMES),
    'splits': Names('test_id,test_ood', choices=SPLITS),
    'learner': Choice('sac', choices=ALGOS),     # ppo reads its settings from `ppo`
    'exploration': Choice('action', choices=EXPLORATIONS),   # the adaptation protocol
    # a run directory whose meta-trained backbone to reuse: this family's, or another robot's
    # with the same policy.widths (then only the backbone is carried; inherit.py)
    'backbone_from': Text(''),
    'oracle_factor': Int(5, low=1),   # the oracle's budget, in multiples of adapt.total_steps
    # core_size > 0 adds a GRU between backbone and output adapter (PPO only; see policy.py).
    'policy': {'widths': Widths((256, 256, 256)),
               'activation': Choice('relu', choices=tuple(sorted(policy.ACTIVATIONS))),
               'core_size': Int(0, low=0),
               # fresh adapters' pre-tanh std; 0: softplus(0) + 1e-3 = 0.694 (see policy.py)
               'init_scale': Real(0.0, low=0.0),
               # what adaptation trains in the methods that train adapters alone (apb,
               # apb_warm, apb_randominit): linear (the paper's), in_only, out_only, lora
               # (+ a rank-lora_rank update of each frozen layer), film (+ a per-layer scale and
               # shift); meta-training and scratch/finetune keep linear (policy.py)
               'adapter': Choice('linear', choices=policy.ADAPTER_FORMS),
               'lora_rank': Int(4, low=1)},
    # SAC and TD3 (apb_jax.learners.LearnerConfig fields), every stage.
    'rl': {'num_envs': Int(16, low=1), 'batch_size': Int(256, low=1),
           'grad_updates_per_step': Int(4, low=1), 'buffer_size': Int(1_000_000, low=1),
           'warmup_steps': Int(2_048, low=0), 'eval_episodes': Int(4, low=1),
           # env steps after warm-up in which only the critic trains (0: none; learners/config);
           # adaptation sets its own from adapt.actor_delay_fraction, and adapt.init_alpha
           'actor_delay': Int(0, low=0),
           'gamma': Real(0.99, **_UNIT), 'tau': Real(0.005, above=0.0, high=1.0),
           'actor_lr': Real(3e-4, **_LR), 'critic_lr': Real(3e-4, **_LR),
           'alpha_lr': Real(3e-4, **_LR), 'init_alpha': Real(1.0, **_LR),
           'reward_scale': Real(1.0, **_LR), 'normalize_obs': Flag(True),
           'critic_widths': Widths((256, 256))},
    # PPO (apb_jax.learners.PPOConfig fields), when learner=ppo. One rollout is num_envs *
    # unroll_length env steps per task; every budget and eval_every must be a multiple of
    # it. lr 1e-3, measured: cheetah_vel test_id, 4 tasks, 30,720 steps, mean final eval
    # return from -273 (mode all / adapters): lr 3e-4 -270 / -272 (only the std shrinks),
    # 1e-3 -156 / -197, 3e-3 -185 / -118. The linear adapters want a larger step than the
    # whole network; 1e-3 lets both learn.
    'ppo': {'num_envs': Int(16, low=1), 'unroll_length': Int(32, low=1), 'epochs': Int(8, low=1),
            'num_minibatches': Int(4, low=1), 'lr': Real(1e-3, **_LR),
            'max_grad_norm': Real(0.5, low=0.0),      # 0 turns the clip off
            'gamma': Real(0.99, **_UNIT), 'gae_lambda': Real(0.95, **_UNIT),
            'clip_eps': Real(0.2, above=0.0), 'value_coef': Real(0.5, low=0.0),
            'entropy_coef': Real(1e-3, low=0.0), 'normalize_advantage': Flag(True),
            'reward_scale': Real(1.0, **_LR), 'normalize_obs': Flag(True),
            'value_widths': Widths((256, 256)), 'core_reset_episodes': Int(1, low=1),
            # the output adapter's mean-half gain under PPO (policy.PolicyConfig.loc_gain; SAC
            # and TD3 keep 1e-4, whose near-zero start keeps their early rollouts tame).
            # Measured (make bench's PPO line, lr 3e-4, cheetah_vel, 98,304 steps, medians of
            # 2 runs, brax.training in the same run): 1e-4 and 0.01 stay flat (-131.5, -131.7),
            # 1.0 learns: ours -113.5 (-108.4, -118.6) vs brax -123.3 (-112.8, -133.8);
            # experiments/measured/cpu_ppo_loc_gain_2026-12-04.json. brax.training's policy
            # head has a fan-in (lecun) init, gain 1.
            'loc_gain': Real(1.0, above=0.0)},
    'meta': {
        'method': Choice('rl', choices=meta_train.METHODS),  # rl: multi-task RL; bc: distil
        'num_tasks': Int(8, low=1), 'total_steps': Int(204_800, low=1),
        'eval_every': Int(20_480, low=1),
        'distill': {'steps': Int(2_000, low=1), 'batch_size': Int(256, low=1),
                    'lr': Real(1e-3, **_LR), 'demo_steps': Int(8_192, low=1),
                    'behaviour_noise': Real(0.2, low=0.0)}},
    # critic: what the SAC/TD3 critic starts from at adaptation (see apb_jax/adapt.py).
    # adapters: 'origin', every train task and every run starts from one adapter origin saved
    # with the backbone (inherit.py); 'independent', fresh draws per task and run (before
    # issue 29). obs_stats: 'meta', the meta-backbone methods start their normaliser from
    # meta-training's statistics; 'fresh', every method starts an empty one (before issue 29;
    # with adapters=independent it reproduces that protocol's numbers).
    'adapt': {'num_tasks': Int(4, low=1), 'seeds': Int(2, low=1),
              'total_steps': Int(30_720, low=1), 'eval_every': Int(3_072, low=1),
              'critic': Choice('fresh', choices=adapt.CRITICS),
              'adapters': Choice('origin', choices=adapt.ADAPTERS),
              'obs_stats': Choice('meta', choices=adapt.OBS_STATS),
              # SAC/TD3 at adaptation (every method; meta-training and the baselines keep
              # `rl`'s): the temperature starts at init_alpha, and for the first
              # actor_delay_fraction of the budget after warm-up only the critic trains.
              # Measured (issue 29, cheetah_dir default, 4 tasks x 1 seed, same backbone):
              # with rl's init_alpha 1.0 and no delay alpha only falls to 0.14 in 30,720
              # steps, an entropy bonus as large as the per-step reward, and a fresh critic
              # pulls apb_warm from 674 to 101 in 3,072 steps. At 0.045 (meta-training's
              # final alpha) and 0.2 (6,144 steps) every method ends higher, test_id / test_ood
              # finals old -> new: apb 107.6 -> 188.3 / 520.9 -> 789.1, apb_randominit
              # 103.8 -> 159.8 / 632.4 -> 695.7, scratch 116.1 -> 284.5 / 624.6 -> 793.2,
              # finetune 101.1 -> 289.2 / 577.8 -> 749.4, apb_warm 445.5 -> 622.0 (test_id);
              # apb_warm with the temperature alone 519.5, the delay alone 366.4.
              # experiments/measured/runs/cheetah_dir_*_2026-12-04.
              'init_alpha': Real(0.045, **_LR),
              'actor_delay_fraction': Real(0.2, low=0.0, high=1.0),
              # the stages that share a learner program (mode, critic setup, budget: plan.py)
              # run as one call, their runs side by side on the task axis, each with its own
              # backbone, start and keys; false: one call per stage. A run's numbers do not
              # depend on what it is stacked with (its backbone is its own: bit for bit,
              # tests/test_learners.py), but XLA:CPU rounds a batch of K runs differently for
              # another K: curves agree within 1e-4 (4e-5 measured; tests/test_experiment.py).
              'stack': Flag(True)},
    # Meta-RL baselines (apb_jax/baselines), run when named in `methods`, meta-trained on
    # the same train tasks with meta.total_steps * meta_factor env steps per task.
    # rl2: PPO (the `ppo` settings) with a GRU of core_size on trials of trial_episodes
    # episodes. pearl: SAC (the `rl` settings) with oyster's encoder settings
    # (configs/default.py); the next obs in the context, which the dynamics families need
    # (oyster issue #4). maml: ProMP's settings (run_scripts/pro-mp_run_mujoco.py);
    # num_envs episodes per rollout.
    'baselines': {
        'meta_factor': Int(1, low=1),
        'rl2': {'trial_episodes': Int(2, low=1), 'core_size': Int(128, low=1)},
        'pearl': {'latent_size': Int(5, low=1), 'kl_weight': Real(0.1, low=0.0),
                  'context_size': Int(100, low=1), 'encoder_widths': Widths((200, 200, 200)),
                  'encoder_lr': Real(3e-4, **_LR), 'use_next_obs': Flag(True)},
        'maml': {'num_envs': Int(20, low=1), 'inner_lr': Real(0.1, **_LR),
                 'lr': Real(1e-3, **_LR), 'outer_steps': Int(5, low=1),
                 'clip_eps': Real(0.3, above=0.0), 'inner_kl_coef': Real(5e-4, low=0.0),
                 'gamma': Real(0.99, **_UNIT), 'normalize_obs': Flag(True)}},
    # The claims' verdicts (apb_jax/claims.py), fixed before the run and stated with them.
    # margin: a non-inferiority claim ("reaches", "is competent") is supported when A - B
    # lies above -margin x |R_reference - R_random| per task (the reference's gain over the
    # random policy); 0 makes it superiority. final_evals: the final return is each run's
    # mean over its last final_evals evaluations (never the one before training).
    'claims': {'margin': Real(claims.MARGIN, **_UNIT),
               'final_evals': Int(claims.FINAL_EVALS, low=1)},
}


def defaults():
  """An `ml_collections.ConfigDict` of every field's default."""
  return schema.defaults(FIELDS)
