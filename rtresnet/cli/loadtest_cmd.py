"""`rtresnet loadtest`: a thin adapter over `rtresnet.serving.loadtest`."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("url")
@click.option("--model", "-m", "model_name", required=True, help="Model name on the server (serve's READY line).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=1, show_default=True,
              help="Clients, each with one request in flight.")
@click.option("--requests", "-n", type=click.IntRange(min=1), default=200, show_default=True,
              help="Requests to send in all.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), default=1, show_default=True,
              help="Samples per request.")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Stop sending after this many seconds.")
@click.option("--protocol", type=click.Choice(("http", "grpc")), default=None,
              help="When URL has no scheme (default http).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def loadtest(url: str, model_name: str, concurrency: int, requests: int, batch_size: int, timeout_s: float,
             protocol: str | None, as_json: bool) -> None:
    """Load-test a running Triton at URL (http://host:port or grpc://host:port): throughput, latency percentiles,
    failed requests and the batch sizes Triton formed. Exits 1 if any request failed.

    \b
    Example:
      rtresnet loadtest http://127.0.0.1:8000 --model resnet50 --concurrency 8 --requests 400
    """
    from rtresnet.serving import loadtest as run_loadtest
    from rtresnet.serving.report import summary_lines

    result = run_loadtest(url, model_name, concurrency=concurrency, requests=requests, batch_size=batch_size,
                          timeout_s=timeout_s, protocol=protocol)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for line in summary_lines(result):
            click.echo(line)
    for message in result.errors:
        click.echo(f"error: {message}", err=True)
    if not result.ok:
        click.echo(f"error: {result.requests_failed} of {result.requests_sent} requests failed", err=True)
        raise click.exceptions.Exit(1)
