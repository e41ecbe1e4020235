"""MLflow pyfunc wrapper of a saved generator (logged as models-from-code; not imported elsewhere).

``mlflow.pyfunc.load_model("models:/lus-generator-viral@champion").predict(
pd.DataFrame({"n": [8], "seed": [0]}))`` returns uint8 frames (8, H, W) of the target class.
Optional columns ``sampler`` and ``steps`` override the defaults stored in generator.json.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd


class GeneratorModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from lusaug.generators.sampling import Generator

        self.generator = Generator.load(context.artifacts["generator"])

    def predict(self, context, model_input, params=None):
        row = pd.DataFrame(model_input).iloc[0]
        sampler = row.get("sampler") if "sampler" in row else None
        steps = int(row["steps"]) if "steps" in row and pd.notna(row["steps"]) else None
        images = self.generator.sample(
            int(row["n"]), int(row["seed"]), sampler=sampler or None, steps=steps
        )
        return np.asarray(images, np.uint8)


mlflow.models.set_model(GeneratorModel())
