"""`rtresnet export-triton`: a thin adapter over `rtresnet.serving.export_triton`."""

from __future__ import annotations

from pathlib import Path

import click

from rtresnet.cli.options import batch_sizes, limited


@click.command("export-triton")
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--repository", "-r", type=click.Path(path_type=Path), required=True,
              help="Triton model repository folder (created if missing).")
@click.option("--model-name", default=None, help="Model folder and name (default: the engine's file name).")
@click.option("--max-batch", type=limited("batch"), default=None,
              help="max_batch_size (default: the engine profile's maximum; 32 for a plain ONNX).")
@click.option("--max-queue-delay-us", type=int, default=100, show_default=True,
              help="Dynamic batching: how long Triton may hold a request to batch it.")
@click.option("--preferred-batch-sizes", default=None, metavar="N[,N...]",
              help="Dynamic batching: batch sizes Triton aims for.")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances (instance_group count).")
@click.option("--max-queue-size", type=int, default=0, show_default=True,
              help="Reject requests beyond this many waiting (0: unbounded).")
@click.option("--kind", type=click.Choice(("cpu", "gpu")), default=None,
              help="Plain ONNX only: instance kind (a plan is GPU-only, an onnxruntime engine CPU-only).")
@click.option("--force", is_flag=True, help="Replace an existing model folder.")
def export_triton(engine: Path, repository: Path, model_name: str | None, max_batch: int | None,
                  max_queue_delay_us: int, preferred_batch_sizes: str | None, instances: int, max_queue_size: int,
                  kind: str | None, force: bool) -> None:
    """Write ENGINE (TensorRT plan or onnxruntime engine with its sidecar, or an exported .onnx) into a Triton
    model repository, with a config.pbtxt checked against Triton's own ModelConfig schema.

    \b
    Example:
      rtresnet export-triton engines/resnet50_int8.plan --repository models/ --preferred-batch-sizes 8,16
      docker run --rm --gpus all -p 8000:8000 -v $PWD/models:/models \\
          nvcr.io/nvidia/tritonserver:<YY.MM>-py3 tritonserver --model-repository=/models
    """
    from rtresnet.serving import export_triton as write_repository

    repo = write_repository(engine, repository, model_name=model_name, max_batch=max_batch,
                            max_queue_delay_us=max_queue_delay_us,
                            preferred_batch_sizes=batch_sizes(preferred_batch_sizes, "--preferred-batch-sizes"),
                            instances=instances, max_queue_size=max_queue_size, kind=kind, force=force)
    click.echo(f"wrote {repo.model_dir} ({repo.platform}, max_batch_size {repo.max_batch})")
    click.echo(f"serve it with the Triton container carrying {repo.requirement}:")
    click.echo(f"  {repo.docker_command}")
