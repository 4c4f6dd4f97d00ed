"""The research variants as one plugin: `plugins=[experiments.variants]` on a run's command line or in its
YAML registers them by name (core.registry), so its config may name them:

    python run.py --config configs/geosynth_gpu.yaml plugins=[experiments.variants] mix.select_target=value
    python run.py ... plugins=[experiments.variants] metrics=[select_vs_vote,letter_binding,arithmetic]

Importing this module imports the modules that register themselves.
"""

from experiments import diagnostics  # noqa: F401  (metrics: select_vs_vote, letter_binding, arithmetic, ...)
from experiments import mix_variants  # noqa: F401  (the swap extra sets, the arith filter)
from experiments import select_targets  # noqa: F401  (pointer, check, value, table select targets)
