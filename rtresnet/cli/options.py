"""Options shared by several commands (`quantize` and `build`), their choices taken from the library's tuples."""

from __future__ import annotations

import click

from rtresnet.spec import LIMITS


class LimitedInt(click.IntRange):
    """An integer within a range; anything else (out of range, 1.5, abc) is refused naming the range."""

    def __init__(self, low: int | None, high: int, allowed: str) -> None:
        super().__init__(low, high)
        self.allowed = allowed

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            self.fail(f"must be an integer in {self.allowed}, got {value!r}", param, ctx)


def limited(what: str, low: int | None = None, *, top_only: bool = False) -> LimitedInt:
    """An integer option within ``rtresnet.spec.LIMITS[what]`` (``low`` raises its bottom): click refuses anything
    else in one line naming the range, before any work starts. ``top_only``: values below the range pass on to the
    library, whose own message says what is wrong with them."""
    lo, hi = LIMITS[what]
    lo = lo if low is None else low
    return LimitedInt(None if top_only else lo, hi, f"{lo}..{hi}")

# CalibrationSettings' fields as options (its cache_dir is `quantize --cache-dir`; build keeps ranges in the cache)
CALIBRATION_KWARGS = ("calib_data", "calib_size", "calib_batch", "method", "percentile", "high_precision",
                      "exclude", "keep_io_layers_float", "seed")


def calibration_options(f):
    """Calibration options shared by `rtresnet quantize` and `rtresnet build`; they arrive as the keyword
    arguments of ``quantize_int8`` named in ``CALIBRATION_KWARGS`` (``exclude`` is a tuple)."""
    from rtresnet.precision.int8 import HIGH_PRECISIONS, METHODS  # here: commands without calibration skip it

    options = [
        click.option("--calib-data", "calib_data", metavar="DIR|LIST.txt|FILE.npy|digits|synthetic",
                     help="Calibration data: image folder (recursive), text list of images, .npy/.npz tensors, "
                          "'digits' or 'synthetic' (random: timing only)."),
        click.option("--calib-size", "calib_size", type=limited("calib size", top_only=True), default=512,
                     show_default=True,
                     help="Calibration samples (seeded random choice; warns below 300)."),
        click.option("--calib-batch", "calib_batch", type=limited("calib batch", top_only=True), default=16,
                     show_default=True,
                     help="Samples per calibration batch."),
        click.option("--calib-method", "method", type=click.Choice(METHODS),
                     default="entropy", show_default=True,
                     help="onnxruntime calibrator (it has no MSE method)."),
        click.option("--percentile", type=float, default=99.99, show_default=True,
                     help="With --calib-method percentile: the percentile of |x| kept."),
        click.option("--high-precision", "high_precision", type=click.Choice(HIGH_PRECISIONS), default="fp16",
                     show_default=True, help="TensorRT target: precision of the non-quantized remainder."),
        click.option("--exclude", "exclude", multiple=True, metavar="NAME_OR_OPTYPE",
                     help="Keep this node or op type in float (repeatable)."),
        click.option("--keep-io-layers-float", "keep_io_layers_float", is_flag=True,
                     help="Keep the first Conv and the final Gemm in float."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration sample."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


VERIFY_KWARGS = ("min_cosine", "min_agreement", "accept_mismatch")


def one_precision(**given: bool) -> str | None:
    """The precision flag given (``fp16=True`` for --fp16/--half...), None for none; two is a usage error (click's
    flag_value options sharing one name would let the last one win silently)."""
    from rtresnet.errors import UsageError

    chosen = [name for name, on in given.items() if on]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join('--' + c for c in chosen)} exclude each other; give one precision")
    return chosen[0] if chosen else None


def verification_options(f):
    """How the FP16/INT8 result is judged against FP32 (shared by `quantize` and `build`)."""
    options = [
        click.option("--min-cosine", "min_cosine", type=float,
                     help="Fail below this mean cosine similarity of the logits to FP32 "
                          "[default: 0.999 for FP16, 0.9 for INT8]."),
        click.option("--min-agreement", "min_agreement", type=float,
                     help="Fail below this share of samples whose top-1 class matches FP32 "
                          "[default: 0.99 for FP16, 0.5 for INT8]."),
        click.option("--accept-mismatch", "accept_mismatch", is_flag=True,
                     help="Write the model even when it fails verification (a warning names the worst layers)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def refuse_given_without_int8(names) -> None:
    """The shared options arrive with their defaults filled in: only the ones the user gave are an error."""
    from rtresnet.errors import RtresnetError

    ctx = click.get_current_context()
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    given = [k for k in names if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT]
    if given:
        raise RtresnetError(f"{', '.join(flags[k] for k in given)} only apply with --int8")


def batch_sizes(text: str | None, option: str) -> tuple[int, ...]:
    """"4,8,16" -> (4, 8, 16); anything else is a one-line error naming ``option``."""
    from rtresnet.errors import RtresnetError
    from rtresnet.spec import describe_range

    if not text:
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise RtresnetError(f"{option} takes comma-separated integers in {describe_range('batch')} such as 4,8,16, "
                            f"got {text!r}") from None
    from rtresnet.spec import check_range

    for s in sizes:
        check_range("batch", s, f"{option} value")
    return sizes
