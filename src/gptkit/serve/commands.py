"""The ``gptkit serve`` subcommand: an OpenAI-compatible HTTP server for one model."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

from gptkit.errors import GPTKitError
from gptkit.options import add_model_options, port_number, positive_float, positive_int

API_KEY_ENV = "GPTKIT_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``."""
    from gptkit.serve.limits import DEFAULT_MAX_QUEUE, DEFAULT_READ_TIMEOUT_S, DEFAULT_TIMEOUT_S, Limits

    defaults = Limits()
    p = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API",
        description="Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
        "/v1/models, /tokenize, /detokenize, /tokenizer_info, /health, /metrics), batching all clients "
        "continuously on one model.",
    )
    add_model_options(p, positional=True, compile=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--served-model-name", help="the model name clients use (default: MODEL as given)")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (or set ${API_KEY_ENV})")
    keys.add_argument("--api-key-file", type=Path, help="read the API key from this file")
    p.add_argument(
        "--max-batch-size", type=positive_int, default=16, help="requests decoded together (default 16)"
    )
    p.add_argument(
        "--max-seq-len", type=positive_int, default=None, help="tokens per request slot (default 2048)"
    )
    p.add_argument(
        "--max-queue",
        type=positive_int,
        default=DEFAULT_MAX_QUEUE,
        help="sequences waiting for a slot before 429",
    )
    p.add_argument(
        "--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, help="seconds per request before 408"
    )
    p.add_argument(
        "--read-timeout",
        type=positive_float,
        default=DEFAULT_READ_TIMEOUT_S,
        help=f"seconds to receive a request body before 408 (default {DEFAULT_READ_TIMEOUT_S:g})",
    )
    p.add_argument("--max-n", type=positive_int, default=defaults.max_n, help="largest n per request")
    p.add_argument(
        "--max-choices",
        type=positive_int,
        default=defaults.max_choices,
        help=f"largest prompts x n (sequences) per request (default {defaults.max_choices})",
    )
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=None,
        help="refuse max_tokens / max_completion_tokens above this with a 400 (default: the slot size)",
    )
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
        help="tokens drafted per step with --speculative (default 5)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model and serve it until interrupted."""
    from gptkit.serve.limits import Limits
    from gptkit.serve.server import run

    check_address(args.host, args.port)  # before the model loads
    run(
        args.model,
        host=args.host,
        port=args.port,
        served_name=args.served_model_name,
        api_key=_api_key(args),
        max_batch_size=args.max_batch_size,
        max_seq_len=args.max_seq_len,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        limits=Limits(
            max_n=args.max_n,
            max_tokens=args.max_tokens,
            max_choices=args.max_choices,
            read_timeout_s=args.read_timeout,
        ),
        dtype=args.dtype,
        quantize=args.quantize,
        compile=args.compile,
        speculative=args.speculative,
        num_speculative_tokens=args.num_speculative_tokens,
        log_level=args.log_level,
    )
    return 0


def speculative_choice(text: str) -> str:
    """argparse type: 'ngram' or 'draft:MODEL'."""
    if text == "ngram" or (text.startswith("draft:") and len(text) > len("draft:")):
        return text
    raise argparse.ArgumentTypeError(f"must be 'ngram' or 'draft:MODEL', got {text!r}")


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
