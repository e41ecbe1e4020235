"""``lusaug serve`` (FastAPI + onnxruntime under uvicorn) and ``lusaug predict FILES...``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("predict")(predict)


def _sampling_and_limits(params):
    from lusaug.export.model_input import ImageLimits
    from lusaug.serving.preprocess import VideoSampling

    s = params.serve
    sampling = VideoSampling(params.frames.sample_fps, params.frames.every_n, s.max_video_frames)
    # frames.min_side: an image the frames stage would skip as too small is refused here too.
    return sampling, ImageLimits(s.max_image_side, s.max_image_pixels, params.frames.min_side)


def _use_tracking(params) -> None:
    import mlflow

    from lusaug.mlflow_store import tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # quiet downloads
    mlflow.set_tracking_uri(tracking_uri(params.mlflow.tracking_uri))


def serve(
    model: str = typer.Option(
        None, "--model", help="models:/<name>@<alias> or an .onnx path [serve.model]."
    ),
    host: str = typer.Option(None, "--host", help="Bind address [serve.host, 127.0.0.1]."),
    port: int = typer.Option(None, "--port", help="TCP port [serve.port]."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Serve the classifier over HTTP: POST /predict, /health[/live|/ready], /metadata, /metrics,
    POST /reload."""
    import uvicorn

    from lusaug.config import load_params
    from lusaug.export.onnx_runtime import ModelSourceError
    from lusaug.serving.app import create_app

    params = load_params(params_file)
    _use_tracking(params)
    cfg = params.serve
    uri, host, port = model or cfg.model, host or cfg.host, port or cfg.port
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: binding to {host} exposes the server beyond this machine", err=True)
    sampling, limits = _sampling_and_limits(params)
    try:
        app = create_app(uri, cfg, sampling, min_side=limits.min_side)
    except ModelSourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=cfg.access_log)


def predict(
    files: list[Path] = typer.Argument(
        ..., help="Images and/or videos: every type the frames stage reads, any case."
    ),
    model: str = typer.Option(
        None, "--model", help="models:/<name>@<alias> or an .onnx path [serve.model]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Predict offline with the server's preprocessing (videos: mean probability over frames)."""
    from rich.console import Console
    from rich.table import Table

    from lusaug.config import load_params
    from lusaug.export.model_source import resolve_model
    from lusaug.export.onnx_runtime import ModelSourceError, OnnxClassifier
    from lusaug.serving.predict import predict_files
    from lusaug.serving.prometheus import INTENDED_USE

    params = load_params(params_file)
    _use_tracking(params)
    sampling, limits = _sampling_and_limits(params)
    try:
        source = resolve_model(model or params.serve.model)
        clf = OnnxClassifier(source.path, threads=params.serve.threads)
    except ModelSourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    results = predict_files(clf, list(files), limits, sampling, params.serve.max_batch)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": source.uri,
                    "version": source.version,
                    "intended_use": INTENDED_USE,
                    "predictions": results,
                },
                indent=2,
            )
        )
    else:
        table = Table(
            title=f"{source.uri} (version {source.version or '-'})", caption=INTENDED_USE
        )
        for col in ["file", "label", "prob", *clf.info.classes]:
            table.add_column(col, justify="left" if col in ("file", "label") else "right")
        for r in results:
            if "error" in r:
                table.add_row(r["file"], f"[red]{r['error']}[/red]")
                continue
            probs = [f"{r['probs'][c]:.3f}" for c in clf.info.classes]
            table.add_row(r["file"], r["label"], f"{r['prob']:.3f}", *probs)
        Console().print(table)
    if any("error" in r for r in results):
        raise typer.Exit(1)
