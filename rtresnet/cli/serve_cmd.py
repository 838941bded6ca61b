"""`rtresnet serve`: a thin adapter over `rtresnet.serving.serve` (Triton Inference Server through PyTriton)."""

from __future__ import annotations

from pathlib import Path

import click

from rtresnet.cli.options import batch_sizes, limited

BACKEND_CHOICES = ("auto", "onnxruntime", "openvino", "tensorrt")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback; 0.0.0.0 exposes the server to the network).")
@click.option("--http-port", type=int, default=8000, show_default=True, help="HTTP port (0: a free one).")
@click.option("--grpc-port", type=int, default=8001, show_default=True, help="gRPC port (0: a free one).")
@click.option("--metrics-port", type=int, default=8002, show_default=True,
              help="Prometheus metrics port (0: a free one).")
@click.option("--model-name", default=None, help="Name clients use (default: the model file's name).")
@click.option("--max-batch", type=limited("batch"), default=None,
              help="Largest batch Triton forms or accepts (default: the engine's maximum, else 32).")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=100, show_default=True,
              help="How long Triton may hold a request to batch it with others.")
@click.option("--preferred-batch-sizes", default=None, metavar="N[,N...]",
              help="Batch sizes Triton's dynamic batcher aims for.")
@click.option("--no-dynamic-batching", "no_dynamic_batching", is_flag=True,
              help="Run each request as it came (for comparison).")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Model instances (each with its own runner) running side by side.")
@click.option("--max-queue-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Requests waiting beyond this are rejected at once (0: unbounded).")
@click.option("-k", "--topk", type=click.IntRange(min=1), default=5, show_default=True,
              help="Classes in the topk_* outputs.")
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="Runtime; auto follows the file (engine sidecar, .onnx).")
@click.option("--device", default=None, help="cpu, cuda[:N], or tensorrt[:N] (onnxruntime's TensorRT EP).")
@click.option("--threads", type=limited("threads"), default=None,
              help="onnxruntime/OpenVINO intra-op threads per instance.")
@click.pass_context
def serve(ctx: click.Context, model: Path, host: str, http_port: int, grpc_port: int, metrics_port: int,
          model_name: str | None, max_batch: int | None, max_queue_delay_us: int, preferred_batch_sizes: str | None,
          no_dynamic_batching: bool, instances: int, max_queue_size: int, topk: int, backend: str,
          device: str | None, threads: int | None) -> None:
    """Serve MODEL (an engine with its sidecar, or an exported .onnx) on Triton Inference Server.

    Triton batches concurrent requests (dynamic batching), answers HTTP and gRPC (KServe v2 protocol) and exports
    Prometheus metrics. Prints one READY line with the URLs once the model answers; SIGINT or SIGTERM stop it.

    \b
    Example:
      rtresnet serve engines/resnet50.onnx --max-batch 32 --instances 2
      rtresnet loadtest http://127.0.0.1:8000 --model resnet50 --concurrency 8 --requests 400
    """
    from rtresnet.serving import ServeSettings
    from rtresnet.serving import serve as run_server

    options = {} if threads is None else {"threads": threads}
    settings = ServeSettings(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                             model_name=model_name, max_batch=max_batch, dynamic_batching=not no_dynamic_batching,
                             max_queue_delay_us=max_queue_delay_us,
                             preferred_batch_sizes=batch_sizes(preferred_batch_sizes, "--preferred-batch-sizes"),
                             instances=instances, max_queue_size=max_queue_size, topk=topk, runner_options=options)

    def ready(endpoints) -> None:
        click.echo(endpoints.ready_line())
        click.get_text_stream("stdout").flush()

    run_server(model, settings, backend=None if backend == "auto" else backend, device=device, on_ready=ready,
               debug=bool(ctx.obj and ctx.obj.get("debug")))
