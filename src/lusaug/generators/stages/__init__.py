"""The generator stages as library functions, one module per stage.

``pipelines/{encoder,base_model,generate,filter}.py`` only parse paths, load params and call
these with the config sections they use. Each returns the summary it wrote, so tests and
benchmarks call them directly.
"""

from lusaug.generators.stages.base_model import run_base_model
from lusaug.generators.stages.encoder import run_encoder
from lusaug.generators.stages.filter import run_filter
from lusaug.generators.stages.generate import run_generate

__all__ = ["run_base_model", "run_encoder", "run_filter", "run_generate"]
