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
    # Limits (defaults: alpamayo_jax.serve.alpasim.ServeLimits; kept here so --help stays instant).
    limits = parser.add_argument_group(
        "limits (a request beyond one is refused with a status naming its field)"
    )
    limits.add_argument(
        "--max-image-pixels",
        type=int,
        default=4096 * 4096,
        help="largest camera frame, width x height, read from the PNG/JPEG header before decoding (default 4096^2)",
    )
    limits.add_argument(
        "--max-image-mib", type=float, default=16.0, help="largest encoded camera frame in MiB (default 16)"
    )
    limits.add_argument(
        "--max-speed", type=float, default=70.0, help="largest ego speed accepted, m/s (default 70)"
    )
    limits.add_argument(
        "--max-position",
        type=float,
        default=1e6,
        help="largest |x|, |y|, |z| of an ego pose or waypoint in the local frame, m (default 1e6)",
    )
    limits.add_argument("--max-sessions", type=int, default=256, help="sessions open at once (default 256)")
    limits.add_argument(
        "--session-idle",
        type=float,
        default=300.0,
        help="close a session after this many seconds without a call (default 300)",
    )
    limits.add_argument(
        "--max-frames-per-camera",
        type=int,
        default=None,
        help="camera frames kept per camera and session, the oldest dropped (default 4 x frames per camera + 2)",
    )
    limits.add_argument(
        "--max-session-frame-mib",
        type=float,
        default=256.0,
        help="encoded frames kept per session over all cameras, the oldest dropped (default 256)",
    )
    limits.add_argument(
        "--max-ego-poses",
        type=int,
        default=1024,
        help="ego poses kept per session (and accepted per request), the oldest dropped (default 1024)",
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
    from alpamayo_jax.run.assets import AssetError
    from alpamayo_jax.run.checkpoint import CheckpointError
    from alpamayo_jax.text.tokenizer import TokenizerError

    try:
        policy, spec = load_policy(args.policy, args.workdir)
    except (
        OSError,
        CheckpointError,
        TokenizerError,
        AssetError,
    ) as err:  # no workdir, no checkpoint, no tokenizer
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
        limits = alpasim.ServeLimits(
            max_image_pixels=args.max_image_pixels,
            max_image_mib=args.max_image_mib,
            max_speed_mps=args.max_speed,
            max_position_m=args.max_position,
            max_sessions=args.max_sessions,
            session_idle_s=args.session_idle,
            max_frames_per_camera=args.max_frames_per_camera,
            max_session_frame_mib=args.max_session_frame_mib,
            max_ego_poses=args.max_ego_poses,
        )
    except ValueError as err:
        raise SystemExit(f"alpamayo serve: {err}") from err
    from PIL import Image

    # PIL's own decompression-bomb guard at the same limit (the service checks the header first).
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    try:
        server, port = alpasim.build_server(
            policy, spec, camera_ids=camera_ids, host=args.host, port=args.port, mode=args.mode, limits=limits
        )
    except OSError as err:
        print(f"alpamayo serve: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    # The port opens now with grpc.health.v1 at NOT_SERVING (egodriver calls: UNAVAILABLE), and
    # says SERVING once the policy is compiled, so a runtime can wait for it instead of timing out.
    server.start(serving=False)
    warm_up = getattr(policy, "warm_up", None)
    if warm_up is not None:  # compile now, not during the runtime's first drive call (it may time out)
        print(f"alpamayo serve: compiling the {policy.name} policy...", file=sys.stderr, flush=True)
        print(f"alpamayo serve: compiled in {warm_up(1) / 1e3:.1f} s", file=sys.stderr, flush=True)
    server.set_serving(True)
    cams = ", ".join(f"{ours}<-{theirs}" for ours, theirs in zip(spec.camera_names, camera_ids)) or "none"
    print(
        f"alpamayo serve: policy {policy.name} serving egodriver.EgodriverService on {args.host}:{port} "
        f"({args.mode} mode; cameras {cams}; health grpc.health.v1 SERVING); Ctrl-C or SIGTERM stops",
        flush=True,
    )
    while not stop.wait(0.5):  # a timed wait, so signals are handled promptly
        pass
    server.stop(grace=2.0).wait()
    print("alpamayo serve: stopped", file=sys.stderr, flush=True)
    return 0
