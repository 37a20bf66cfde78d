"""`alpamayo serve`: Serve the policy over the AlpaSim egodriver gRPC contract."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from alpamayo_jax.commands.missing import MissingCapability

HELP = "Serve the policy over the AlpaSim egodriver gRPC contract."
ACCEPTS_OVERRIDES = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a training workdir")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=50051, help="port to bind (0: any free port, printed)")
    parser.add_argument(
        "--policy",
        choices=("model", "constant_velocity"),
        default="model",
        help="what drives: the trained model in --workdir (default), or the constant-velocity baseline (smoke tests)",
    )
    parser.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="OURS=THEIRS",
        help="read our camera OURS from the runtime's logical id THEIRS (repeatable; default camera_<name>)",
    )
    parser.add_argument(
        "--mode",
        choices=("alpasim", "carla"),
        default="alpasim",
        help="the runtime on the other end (what its opaque payload fields carry; default alpasim)",
    )


def _camera_overrides(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours or not theirs:
            raise SystemExit(
                f"alpamayo serve: --camera expects OURS=THEIRS (e.g. front_wide=camera_front), got {pair!r}"
            )
        mapping[ours] = theirs
    return mapping


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    try:
        from alpamayo_jax.serve import alpasim
    except ImportError as err:  # the optional `serve` extra
        raise MissingCapability(f"the `serve` extra (pip install 'alpamayo_jax[serve]'): {err}") from err
    from alpamayo_jax.eval.model_policy import load_policy
    from alpamayo_jax.run.checkpoint import CheckpointError
    from alpamayo_jax.text.tokenizer import TokenizerError

    try:
        policy, spec = load_policy(args.policy, args.workdir)
    except (OSError, CheckpointError, TokenizerError) as err:  # no workdir, no checkpoint, no tokenizer
        print(f"alpamayo serve: cannot load the {args.policy} policy: {err}", file=sys.stderr)
        return 2
    mapping = _camera_overrides(args.camera)
    unknown = sorted(set(mapping) - set(spec.camera_names))
    if unknown:
        raise SystemExit(
            f"alpamayo serve: --camera names unknown camera(s) {unknown}; this policy's cameras: {list(spec.camera_names)}"
        )
    defaults = alpasim.default_camera_ids(spec.camera_names)
    camera_ids = tuple(mapping.get(name, default) for name, default in zip(spec.camera_names, defaults))

    try:
        server, port = alpasim.build_server(
            policy, spec, camera_ids=camera_ids, host=args.host, port=args.port, mode=args.mode
        )
    except OSError as err:
        print(f"alpamayo serve: {err}", file=sys.stderr)
        return 2
    warm_up = getattr(policy, "warm_up", None)
    if warm_up is not None:  # compile now, not during the runtime's first drive call (it may time out)
        print(f"alpamayo serve: compiling the {policy.name} policy...", file=sys.stderr, flush=True)
        print(f"alpamayo serve: compiled in {warm_up(1) / 1e3:.1f} s", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    cams = ", ".join(f"{ours}<-{theirs}" for ours, theirs in zip(spec.camera_names, camera_ids)) or "none"
    print(
        f"alpamayo serve: policy {policy.name} serving egodriver.EgodriverService on {args.host}:{port} "
        f"({args.mode} mode; cameras {cams}); Ctrl-C or SIGTERM stops",
        flush=True,
    )
    while not stop.wait(0.5):  # a timed wait, so signals are handled promptly
        pass
    server.stop(grace=2.0).wait()
    print("alpamayo serve: stopped", file=sys.stderr, flush=True)
    return 0
