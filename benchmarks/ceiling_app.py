"""The fastest server FastAPI + uvicorn allow here: reads the body, returns a constant answer.

benchmarks/serving.py measures it beside `lusaug serve` and `mlflow models serve` (both FastAPI +
uvicorn): its requests/s bound what any server on this stack and machine can reach, so they say
whether a target such as '3x mlflow models serve' is reachable at all.
"""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()
ANSWER = {
    "predictions": [
        {"probabilities": {"regular": 0.25, "covid": 0.25, "pneumonia": 0.25, "viral": 0.25}}
    ]
}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict(request: Request) -> dict:
    await request.body()
    return ANSWER
