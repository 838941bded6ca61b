"""The `rtresnet` command: a click group whose commands live one per module and load on demand."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from rtresnet import __version__
from rtresnet.errors import RtresnetError

# name -> "module:attribute"; each module is a thin adapter over one library function.
COMMANDS = {
    "models": "rtresnet.cli.models_cmd:models",
    "doctor": "rtresnet.cli.doctor_cmd:doctor",
    "export": "rtresnet.cli.export_cmd:export",
    "quantize": "rtresnet.cli.quantize_cmd:quantize",
    "build": "rtresnet.cli.build_cmd:build",
    "predict": "rtresnet.cli.predict_cmd:predict",
    "bench": "rtresnet.cli.bench_cmd:bench",
    "serve": "rtresnet.cli.serve_cmd:serve",
    "export-triton": "rtresnet.cli.export_triton_cmd:export_triton",
    "loadtest": "rtresnet.cli.loadtest_cmd:loadtest",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = [n for n, target in COMMANDS.items() if importlib.util.find_spec(target.split(":")[0])]
        return lazy + sorted(set(self.commands) - set(lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def main(self, *args, **kwargs):
        """Click's usage errors, like ours, become one `error:` line (click prints a three-line block)."""
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.UsageError as e:
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:  # one line for users; the traceback only with --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            msg = str(e) if isinstance(e, RtresnetError) else f"{type(e).__name__}: {e}"
            click.echo(f"error: {msg}".splitlines()[0], err=True)
            if not isinstance(e, RtresnetError):
                click.echo("(unexpected error; run with --debug for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rtresnet")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def main(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Deploy ResNet classifiers: PyTorch -> verified ONNX -> FP16/INT8 engines -> benchmarks.

    \b
    Example:
      rtresnet export --arch resnet50 --weights IMAGENET1K_V2
      rtresnet build engines/resnet50.onnx --int8 --calib-data ./calib_images
      rtresnet bench --arch resnet50 --backends torch,onnxruntime,onnxruntime-int8
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    from rtresnet.cli.ui import setup_logging

    setup_logging(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)


def run() -> None:  # console-script entry point
    main(prog_name="rtresnet")


if __name__ == "__main__":
    sys.exit(run())
