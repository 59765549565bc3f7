"""APB-JAX: Adaptive Policy Backbone (arXiv 2509.22310) in JAX.

Modules:
  tasks    task families (Brax envs whose task lives in a pytree)
  policy   frozen MLP backbone + linear adapters (pure init/apply)
  optim    optax partition: which parameter leaves train
  cache    JAX persistent compilation cache
"""

__version__ = '0.1.0'
