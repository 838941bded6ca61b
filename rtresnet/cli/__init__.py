"""The `rtresnet` command: a click group whose commands live one per module and load on demand."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import click

from rtresnet import __version__
from rtresnet.errors import RtresnetError

# Flags of the group that may also be given after the command name.
GLOBAL_FLAGS = ("--debug", "-v", "--verbose", "-q", "--quiet")
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as shells report it

# name -> "module:attribute"; each module is a thin adapter over one library function.
COMMANDS = {
    "models": "rtresnet.cli.models_cmd:models",
    "digits": "rtresnet.cli.digits_cmd:digits",
    "doctor": "rtresnet.cli.doctor_cmd:doctor",
    "export": "rtresnet.cli.export_cmd:export",
    "quantize": "rtresnet.cli.quantize_cmd:quantize",
    "build": "rtresnet.cli.build_cmd:build",
    "predict": "rtresnet.cli.predict_cmd:predict",
    "bench": "rtresnet.cli.bench_cmd:bench",
    "serve": "rtresnet.cli.serve_cmd:serve",
    "export-triton": "rtresnet.cli.export_triton_cmd:export_triton",
    "loadtest": "rtresnet.cli.loadtest_cmd:loadtest",
    "inspect": "rtresnet.cli.inspect_cmd:inspect_cmd",
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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._hoist_global_flags(ctx, list(args)))

    def _hoist_global_flags(self, ctx: click.Context, args: list[str]) -> list[str]:
        """`rtresnet export --debug ...` means `rtresnet --debug export ...`: global flags given after the command
        move before it, unless that command has an option of the same name."""
        i = next((k for k, a in enumerate(args) if not a.startswith("-")), None)
        if i is None or (args[i] not in COMMANDS and args[i] not in self.commands):
            return args
        end = args.index("--") if "--" in args[i:] else len(args)
        try:
            own = {o for p in self.get_command(ctx, args[i]).params for o in (*p.opts, *p.secondary_opts)}
        except Exception:  # a command that cannot import reports that itself when invoked
            own = set()
        moved = [a for a in args[i + 1:end] if a in GLOBAL_FLAGS and a not in own]
        if not moved:
            return args
        rest = [a for a in args[i + 1:end] if a not in moved]
        return args[:i] + moved + [args[i]] + rest + args[end:]

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
        except click.exceptions.Abort as e:  # click turns Ctrl-C (KeyboardInterrupt) into Abort
            interrupted = isinstance(e.__context__, KeyboardInterrupt)
            click.echo("error: interrupted" if interrupted else "error: aborted", err=True)
            sys.exit(INTERRUPTED_EXIT_CODE if interrupted else 1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(INTERRUPTED_EXIT_CODE)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        from rtresnet import steps

        try:
            with steps.record() as times:
                rv = super().invoke(ctx)
        except click.exceptions.Exit as e:  # a command's own exit status (bench gates: 3); --help exits 0
            if e.exit_code and ctx.invoked_subcommand and not (ctx.obj or {}).get("quiet"):
                logging.getLogger("rtresnet.cli").info("%s", times.summary())
            raise
        except (click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:  # one line for users; the traceback only with --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            msg = str(e) if isinstance(e, RtresnetError) else f"{type(e).__name__}: {e}"
            click.echo(f"error: {msg}".splitlines()[0], err=True)
            if not isinstance(e, RtresnetError):
                click.echo("(unexpected error; run with --debug for the traceback)", err=True)
            ctx.exit(getattr(e, "exit_code", 1))
        if ctx.invoked_subcommand and not (ctx.obj or {}).get("quiet"):
            logging.getLogger("rtresnet.cli").info("%s", times.summary())
        return rv


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rtresnet")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logs (without tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Only results, warnings and errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool, quiet: bool) -> None:
    """Deploy ResNet classifiers: PyTorch -> verified ONNX -> FP16/INT8 engines -> benchmarks.

    \b
    Example:
      rtresnet export --arch resnet50 --weights IMAGENET1K_V2
      rtresnet build engines/resnet50.onnx --int8 --calib-data ./calib_images
      rtresnet bench --arch resnet50 --backends torch,onnxruntime,onnxruntime-int8
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["verbose"] = verbose
    ctx.obj["quiet"] = quiet and not (debug or verbose)
    from rtresnet.cli.ui import setup_logging

    setup_logging(logging.DEBUG if debug or verbose else logging.WARNING if quiet else logging.INFO)


def run() -> None:  # console-script entry point
    main(prog_name="rtresnet")


if __name__ == "__main__":
    sys.exit(run())
