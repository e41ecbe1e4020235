"""``lusaug serve`` (FastAPI + onnxruntime under uvicorn) and ``lusaug predict FILES...``."""

from __future__ import annotations

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

    from lusaug.core.mlflow_store import tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # quiet downloads
    mlflow.set_tracking_uri(tracking_uri(params.mlflow.tracking_uri))


def _log_to_stderr() -> None:
    """The server's own log lines (model loaded, reloads) beside uvicorn's, at INFO."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    logger = logging.getLogger("lusaug")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def serve(
    model: str = typer.Option(
        None, "--model", help="models:/<name>@<alias> or an .onnx path [serve.model]."
    ),
    host: str = typer.Option(None, "--host", help="Bind address [serve.host, 127.0.0.1]."),
    port: int = typer.Option(None, "--port", help="TCP port [serve.port]."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Serve the classifier over HTTP: POST /predict, GET /health[/live|/ready], /metadata,
    /metrics, /docs, POST /reload."""
    import uvicorn

    from lusaug.core.config import load_params
    from lusaug.export.onnx_runtime import ModelSourceError
    from lusaug.serving.app import create_app

    params = load_params(params_file)
    _use_tracking(params)
    cfg = params.serve
    uri, host, port = model or cfg.model, host or cfg.host, port or cfg.port
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: binding to {host} exposes the server beyond this machine", err=True)
    sampling, limits = _sampling_and_limits(params)
    _log_to_stderr()
    try:
        app = create_app(uri, cfg, sampling, min_side=limits.min_side)
    except ModelSourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=cfg.access_log)


def _print_answer(answer) -> None:
    """The predictions as a table, then one line per file that failed (status, reason, why)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    m = answer.model
    version = f"version {m.version}" if m.version else "a plain file"
    table = Table(title=f"{m.name}, {version}", caption=answer.intended_use)
    classes = answer.classes
    for col in ["file", "label", "prob", *classes, "frames"]:
        left = col in ("file", "label")
        table.add_column(col, justify="left" if left else "right", overflow="fold")
    predicted = [r for r in answer.results if r.kind != "error"]
    for r in predicted:
        probs = [f"{r.probs[c]:.3f}" for c in classes]
        frames = str(r.frames) if r.kind == "video" else ""
        table.add_row(r.file, r.label, f"{r.prob:.3f}", *probs, frames)
    if predicted:
        console.print(table)
    for r in answer.results:
        if r.kind == "error":  # Text: the message is shown as is, never read as markup
            why = r.error if r.error.startswith(r.file) else f"{r.file}: {r.error}"
            console.print(Text(f"{why} ({r.status} {r.reason.value})", style="red"))


def predict(
    files: list[Path] = typer.Argument(
        ..., help="Images and/or videos: every type the frames stage reads, any case."
    ),
    model: str = typer.Option(
        None, "--model", help="models:/<name>@<alias> or an .onnx path [serve.model]."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the JSON POST /predict answers (same schema)."
    ),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Predict offline with the server's preprocessing (videos: mean probability over frames).

    Exits 1 when any file could not be predicted (each such file says why).
    """
    from lusaug.core.config import load_params
    from lusaug.export.model_source import resolve_model
    from lusaug.export.onnx_runtime import ModelSourceError, OnnxClassifier
    from lusaug.serving.predict import predict_files

    params = load_params(params_file)
    _use_tracking(params)
    sampling, limits = _sampling_and_limits(params)
    try:
        source = resolve_model(model or params.serve.model)
        clf = OnnxClassifier(source.path, threads=params.serve.threads)
    except ModelSourceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    answer = predict_files(clf, source, list(files), limits, sampling, params.serve.max_batch)
    if as_json:
        typer.echo(answer.model_dump_json(indent=2))
    else:
        _print_answer(answer)
    if answer.failed:
        raise typer.Exit(1)
