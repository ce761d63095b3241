"""`gptkit chat`: a terminal chat with a model loaded in-process, streaming each answer as it is generated.

The conversation (system prompt + user/assistant exchanges) is rendered with the tokenizer's chat template
for every turn; the oldest exchanges are dropped when the prompt plus ``max_tokens`` would not fit the
engine's context. Each turn's prompt starts with the previous one and its answer, so the engine's prefix
cache (``--prefix-cache-mb``) supplies their keys and values and only the new message is prefilled. Ctrl-C during an answer stops that answer only; Ctrl-D or ``/exit`` quits.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gptkit.errors import ContextLengthError, GPTKitError
from gptkit.options import UsageError, add_model_options, add_prefix_cache_option, load_options, positive_int

PROMPT = ">>> "
DEFAULT_TEMPERATURE = 0.7  # chat samples by default; --temperature 0 is greedy
DEFAULT_MAX_TOKENS = 512
HELP = """commands:
  /system TEXT  set the system prompt (/system alone: the model's default)
  /reset        forget the conversation (the system prompt stays)
  /help         show this help
  /exit         quit (Ctrl-D too); Ctrl-C stops an answer"""

Message = dict[str, str]


def with_system(system: str | None, history: list[Message]) -> list[Message]:
    """The messages for the chat template: the system prompt (when set) then the history."""
    return ([{"role": "system", "content": system}] if system else []) + history


def fit_history(
    tokenizer: Any, system: str | None, history: list[Message], budget: int
) -> tuple[list[int], list[Message]]:
    """Prompt ids of system + history, dropping the oldest exchanges until at most ``budget`` tokens.

    ``history`` alternates user and assistant messages and ends with the new user message, which is
    always kept; returns the ids and the history that was kept.
    """
    while True:
        messages = with_system(system, history)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        if len(ids) <= budget:
            return ids, history
        if len(history) <= 1:
            raise ContextLengthError(
                f"the message and system prompt take {len(ids)} tokens, more than the {budget} left "
                "for a prompt once max_tokens are reserved: shorten them or lower --max-tokens"
            )
        history = history[2:]  # the oldest user message and its answer


class ChatSession:
    """One conversation with an engine: the system prompt, the exchanges so far, the sampling options."""

    def __init__(self, engine: Any, params: Any, system: str | None = None) -> None:
        self.engine = engine
        self.params = params
        self.system = system
        self.history: list[Message] = []

    def reset(self) -> None:
        """Forget every exchange; the system prompt stays."""
        self.history = []

    def prompt_ids(self, text: str) -> list[int]:
        """The prompt for a new user message; exchanges that no longer fit are dropped for good."""
        budget = self.engine.max_seq_len - self.params.max_tokens
        history = [*self.history, {"role": "user", "content": text}]
        ids, kept = fit_history(self.engine.tokenizer, self.system, history, budget)
        self.history = kept[:-1]
        return ids

    def reply(self, text: str, write: Callable[[str], Any], stop: threading.Event) -> str:
        """Stream the answer to ``text`` through ``write`` until done or ``stop`` is set; record the exchange.

        A stopped answer is kept as far as it was shown, so the history matches what the user saw.
        """
        deltas = self.engine.stream(self.prompt_ids(text), self.params)
        answer = ""
        try:
            for delta in deltas:
                if stop.is_set():
                    break
                write(delta)
                answer += delta
        finally:
            deltas.close()  # an unfinished request is aborted in the engine, its slot freed
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        return answer


@contextmanager
def ctrl_c_sets_flag() -> Iterator[threading.Event]:
    """Within the block Ctrl-C sets the yielded flag instead of raising, so no engine step is cut short."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def run_command(session: ChatSession, line: str) -> bool:
    """Run one /command; returns False when the REPL should exit."""
    name, _, argument = line.partition(" ")
    if name in ("/exit", "/quit", "/bye"):
        return False
    if name == "/reset":
        session.reset()
        print("(conversation cleared)")
    elif name == "/system":
        session.system = argument.strip() or None
        print(f"(system prompt: {session.system or 'the model default'})")
    elif name == "/help":
        print(HELP)
    else:
        print(f"unknown command {name}; /help lists the commands", file=sys.stderr)
    return True


def _write(text: str) -> None:
    print(text, end="", flush=True)


def answer(session: ChatSession, text: str) -> None:
    """Print the streamed answer to one message; library errors print one line and the REPL goes on."""
    try:
        with ctrl_c_sets_flag() as stop:
            session.reply(text, _write, stop)
        print(" [stopped]" if stop.is_set() else "")
    except GPTKitError as exc:
        print(f"error: {exc}", file=sys.stderr)


def run_repl(session: ChatSession, banner: str) -> int:
    """Read messages and commands until /exit or end of input; returns the exit status."""
    _enable_line_editing()
    print(banner)
    while True:
        try:
            line = input(PROMPT).strip()
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:  # at the prompt, Ctrl-C clears the line
            print()
            continue
        if line.startswith("/"):
            if not run_command(session, line):
                return 0
        elif line:
            answer(session, line)


def _enable_line_editing() -> None:
    """Arrow keys and history at the prompt, where the readline module exists."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (importing it is what makes input() use it)


def _sampling_params(args: argparse.Namespace):
    """SamplingParams from the command line (validated: a bad value fails before the model loads)."""
    from gptkit.engine import SamplingParams

    options = {} if args.top_p is None else {"top_p": args.top_p}  # unset: SamplingParams' default
    try:
        return SamplingParams(
            max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed, **options
        )
    except GPTKitError as exc:
        raise UsageError(str(exc)) from None


def cmd_chat(args: argparse.Namespace) -> int:
    """Chat with a model in the terminal: streamed answers, history, a system prompt, /help for commands."""
    from gptkit.engine import Engine
    from gptkit.loader import load

    params = _sampling_params(args)
    model, tokenizer = load(args.model, needs_chat_template=True, **load_options(args))
    engine = Engine(
        model, tokenizer, max_batch_size=1, compile=args.compile, prefix_cache_mb=args.prefix_cache_mb
    )
    if args.compile:
        print("compiling the decode step...", file=sys.stderr, flush=True)
        engine.warm_up()
    if params.max_tokens >= engine.max_seq_len:
        raise GPTKitError(
            f"--max-tokens {params.max_tokens} leaves no room for a prompt in {engine.max_seq_len}"
        )
    banner = (
        f"gptkit chat with {args.model} ({engine.max_seq_len} tokens of context). "
        "/help lists the commands; /exit or Ctrl-D quits."
    )
    return run_repl(ChatSession(engine, params, args.system), banner)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `chat` subcommand."""
    p = subparsers.add_parser("chat", help=cmd_chat.__doc__, description=cmd_chat.__doc__)
    add_model_options(p, positional=True, compile=True)
    add_prefix_cache_option(p)
    p.add_argument("--system", default=None, help="system prompt (default: the chat template's own)")
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=DEFAULT_MAX_TOKENS,
        help=f"tokens per answer at most ({DEFAULT_MAX_TOKENS})",
    )
    p.add_argument(
        "--temperature",
        "-t",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help=f"sampling temperature; 0 is greedy ({DEFAULT_TEMPERATURE})",
    )
    p.add_argument(
        "--top-p", type=float, default=None, help="nucleus sampling probability mass (default 1: no cut)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed: the same seed gives the same answers")
    p.set_defaults(func=cmd_chat)
