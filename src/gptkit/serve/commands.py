"""The ``gptkit serve`` subcommand: an OpenAI-compatible HTTP server for one model."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

from gptkit.errors import GPTKitError
from gptkit.options import (
    UsageError,
    add_model_options,
    add_prefix_cache_option,
    named_adapter,
    port_number,
    positive_float,
    positive_int,
)
from gptkit.serve.config import ROUTINGS, Limits, RayOptions, ServeConfig  # dataclasses: --help stays instant

API_KEY_ENV = "GPTKIT_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` (its defaults: ServeConfig's and Limits')."""
    defaults = ServeConfig()
    p = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API",
        description="Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
        "/v1/models, /tokenize, /detokenize, /tokenizer_info, /health, /metrics), batching all clients "
        "continuously on one model.",
    )
    add_model_options(p, positional=True, compile=True)
    add_prefix_cache_option(p)
    p.add_argument(
        "--lora",
        action="append",
        type=named_adapter,
        default=[],
        metavar="NAME=PATH",
        help="serve a LoRA adapter directory (PEFT's layout, or gptkit export --adapter) as model NAME "
        "(repeatable); requests choose it with model: NAME, batched with the base model",
    )
    _add_access_options(p, defaults)
    _add_capacity_options(p, defaults)
    _add_speculative_options(p)
    _add_ray_options(p)
    p.add_argument(
        "--log-level", default=defaults.log_level, choices=["critical", "error", "warning", "info", "debug"]
    )
    p.set_defaults(func=cmd_serve)


def _add_access_options(p: argparse.ArgumentParser, defaults: ServeConfig) -> None:
    """Where the server listens, the name it serves and its API key."""
    p.add_argument("--host", default=defaults.host, help=f"address to listen on (default {defaults.host})")
    p.add_argument(
        "--port", type=port_number, default=defaults.port, help=f"port to listen on (default {defaults.port})"
    )
    p.add_argument("--served-model-name", help="the model name clients use (default: MODEL as given)")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (or set ${API_KEY_ENV})")
    keys.add_argument("--api-key-file", type=Path, help="read the API key from this file")


def _add_capacity_options(p: argparse.ArgumentParser, defaults: ServeConfig) -> None:
    """Slots, queue, timeouts and the per-request limits."""
    limits = defaults.limits
    p.add_argument(
        "--max-batch-size",
        type=positive_int,
        default=defaults.max_batch_size,
        help=f"requests decoded together (default {defaults.max_batch_size})",
    )
    p.add_argument(
        "--max-seq-len",
        type=positive_int,
        default=defaults.max_seq_len,
        help="tokens per request slot (default 2048)",
    )
    p.add_argument(
        "--max-queue",
        type=positive_int,
        default=defaults.max_queue,
        help="sequences waiting for a slot before 429",
    )
    p.add_argument(
        "--timeout", type=positive_float, default=defaults.timeout_s, help="seconds per request before 408"
    )
    p.add_argument(
        "--read-timeout",
        type=positive_float,
        default=limits.read_timeout_s,
        help=f"seconds to receive a request body before 408 (default {limits.read_timeout_s:g})",
    )
    p.add_argument("--max-n", type=positive_int, default=limits.max_n, help="largest n per request")
    p.add_argument(
        "--max-choices",
        type=positive_int,
        default=limits.max_choices,
        help=f"largest prompts x n (sequences) per request (default {limits.max_choices})",
    )
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=limits.max_tokens,
        help="refuse max_tokens / max_completion_tokens above this with a 400 (default: the slot size)",
    )


def _add_speculative_options(p: argparse.ArgumentParser) -> None:
    """Speculative decoding: where drafts come from and how many per step."""
    p.add_argument(
        "--speculative",
        type=speculative_choice,
        default=None,
        help="speculative decoding: 'ngram' (drafts copied from the prompt and output) or 'draft:MODEL' "
        '(a smaller model with the same tokenizer); requests opt out with "speculative": false',
    )
    p.add_argument(
        "--num-speculative-tokens",
        type=positive_int,
        default=None,
        help="most tokens drafted per step with --speculative (default 5; n-gram requests draft what pays off)",
    )


def speculative_choice(text: str) -> str:
    """argparse type: 'ngram' or 'draft:MODEL'."""
    if text == "ngram" or (text.startswith("draft:") and len(text) > len("draft:")):
        return text
    raise argparse.ArgumentTypeError(f"must be 'ngram' or 'draft:MODEL', got {text!r}")


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    """Replicas behind Ray Serve (the gptkit[ray] extra)."""
    ray = RayOptions()
    group = p.add_argument_group("Ray Serve (pip install 'gptkit[ray]')")
    group.add_argument("--ray", action="store_true", help="serve replicas of the app with Ray Serve")
    group.add_argument(
        "--replicas", type=positive_int, default=ray.replicas, help="replica count (default 1)"
    )
    group.add_argument(
        "--autoscaling",
        type=json_object,
        help='Ray Serve autoscaling config as JSON, e.g. \'{"min_replicas": 1, "max_replicas": 4}\'',
    )
    group.add_argument(
        "--replica-cpus", type=positive_float, default=ray.cpus_per_replica, help="Ray CPUs per replica"
    )
    group.add_argument(
        "--routing",
        choices=ROUTINGS,
        default=ray.routing,
        help="session: requests with the same x-session-id header go to the same replica; pow2: Ray's default",
    )
    group.add_argument("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local one)")


def json_object(text: str) -> dict:
    """An argparse type: a JSON object."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model and serve it until interrupted."""
    check_address(args.host, args.port)  # before the model loads
    if args.ray:
        return _serve_with_ray(args)
    from gptkit.serve.server import run

    run(args.model, serve_config(args), dtype=args.dtype, quantize=args.quantize, lora=_adapters(args.lora))
    return 0


def _adapters(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """--lora NAME=PATH options as a dict; a name given twice is a usage error."""
    adapters: dict[str, str] = {}
    for name, path in pairs:
        if name in adapters:
            raise UsageError(f"--lora: the adapter name {name!r} is given twice")
        adapters[name] = path
    return adapters


def _serve_with_ray(args: argparse.Namespace) -> int:
    if args.lora:
        raise UsageError("--lora with --ray is not supported yet: serve adapters from one process")
    try:
        from gptkit.serve import ray as ray_serve
    except ImportError as exc:
        raise GPTKitError(str(exc)) from None
    options = RayOptions(
        replicas=args.replicas,
        autoscaling=args.autoscaling,
        cpus_per_replica=args.replica_cpus,
        routing=args.routing,
        address=args.ray_address,
    )
    ray_serve.run(args.model, serve_config(args), options, dtype=args.dtype, quantize=args.quantize)
    return 0


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """The ServeConfig of ``gptkit serve``'s parsed options (the API key read from its file or env)."""
    limits = Limits(
        max_n=args.max_n,
        max_tokens=args.max_tokens,
        max_choices=args.max_choices,
        read_timeout_s=args.read_timeout,
    )
    return ServeConfig(
        model_name=args.served_model_name or args.model,
        api_key=_api_key(args),
        max_batch_size=args.max_batch_size,
        max_seq_len=args.max_seq_len,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        limits=limits,
        compile=args.compile,
        prefix_cache_mb=args.prefix_cache_mb,
        speculative=args.speculative,
        num_speculative_tokens=args.num_speculative_tokens,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
    )


def check_address(host: str, port: int) -> None:
    """GPTKitError (exit 1) unless the server could listen on host:port now: a name that does not resolve
    or an address in use is reported in one line before the model loads, not as uvicorn's traceback."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise GPTKitError(f"cannot listen on {host}:{port}: the host does not resolve ({exc})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            reason = "the address is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise GPTKitError(f"cannot listen on {host}:{port}: {reason}") from None


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key, --api-key-file or $GPTKIT_API_KEY (None: no authentication)."""
    if args.api_key_file is not None:
        key = args.api_key_file.read_text().strip()
        if not key:
            raise GPTKitError(f"the API key file {args.api_key_file} is empty")
        return key
    return args.api_key or os.environ.get(API_KEY_ENV) or None
