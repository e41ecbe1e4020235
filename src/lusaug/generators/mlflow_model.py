"""MLflow pyfunc wrapper of a saved generator or base (logged as models-from-code).

``mlflow.pyfunc.load_model("models:/lus-generator-viral@champion").predict(
pd.DataFrame({"n": [8], "seed": [0]}))`` returns uint8 frames (8, H, W) of the target class.
Optional columns ``sampler`` and ``steps`` override the defaults stored in generator.json. A base
(``lus-base``) takes a ``prompt`` column too and returns grey frames in [0, 255].
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd

from lusaug.generators.frame_io import from_unit
from lusaug.generators.generator import Generator
from lusaug.generators.text_to_image import TextToImage

BASE_STEPS = 20  # default denoising steps of a base's samples
BASE_GUIDANCE = 3.0  # default classifier-free guidance of a base's samples


class GeneratorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        arts = context.artifacts
        self.base = None
        self.generator = None
        if "generator" in arts:
            self.generator = Generator.load(arts["generator"], base_dir=arts.get("base"))
        else:
            self.base = TextToImage.load(arts["base"])

    def predict(self, context, model_input, params=None):
        row = pd.DataFrame(model_input).iloc[0]
        sampler = row.get("sampler") if "sampler" in row else None
        steps = int(row["steps"]) if "steps" in row and pd.notna(row["steps"]) else None
        n, seed = int(row["n"]), int(row["seed"])
        if self.generator is None:
            imgs = self.base.sample(
                [str(row["prompt"])] * n,
                seed,
                steps or BASE_STEPS,
                BASE_GUIDANCE,
                sampler or "dpmsolver++",
            )
            return from_unit(imgs)
        images = self.generator.sample(n, seed, sampler=sampler or None, steps=steps)
        return np.asarray(images, np.uint8)


mlflow.models.set_model(GeneratorModel())
