"""Tool calling on /v1/chat/completions: ``tools``, ``tool_choice``, ``parallel_tool_calls`` as OpenAI defines
them.

Tools reach the model through its chat template when the template uses ``tools``; otherwise through one
generic format (Hermes / Qwen 2.5's): a system-prompt section listing the tools as JSON inside
``<tools></tools>`` and asking for calls as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
earlier calls are written back the same way and tool results as user turns inside
``<tool_response></tool_response>``. With ``tool_choice`` "required" or a named function the output is
constrained to such calls, the arguments by each tool's JSON Schema. Every caller string still goes through
the chat template's content guard, so tool output cannot forge control tokens.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from gptkit.errors import GPTKitError
from gptkit.generation.constraints import JSON_STYLE, compile_constraint
from gptkit.serve.errors import invalid
from gptkit.serve.schemas import ChatCompletionRequest, ChatMessage, Tool
from gptkit.serve.structured import OutputConstraint, output_constraint

OPEN, CLOSE = "<tool_call>", "</tool_call>"
NO_PARAMETERS = {"type": "object", "properties": {}}
TOOLS_PROMPT = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


@dataclass(frozen=True)
class ToolContext:
    """The tools a request offers and how the model may use them."""

    tools: list[Tool]
    choice: str  # "auto", "required", or the name of the function to call
    parallel: bool  # more than one call per answer

    @property
    def names(self) -> set[str]:
        return {tool.function.name for tool in self.tools}


def parameters(tool: Tool) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments (an object without properties when it declares none)."""
    return tool.function.parameters if tool.function.parameters is not None else NO_PARAMETERS


def tool_context(body: ChatCompletionRequest) -> ToolContext | None:
    """The request's tools (checked: 400s name the field), or None when the model may not call any."""
    tools, choice = body.tools or [], body.tool_choice
    if choice is not None and not tools and choice != "none":
        raise invalid("tool_choice", "tool_choice needs tools: the request lists none")
    names = [tool.function.name for tool in tools]
    for i, tool in enumerate(tools):
        if names.index(tool.function.name) != i:
            raise invalid(f"tools[{i}].function.name", f"two tools are named {tool.function.name!r}")
        try:
            compile_constraint("json_schema", parameters(tool))
        except GPTKitError as error:
            raise invalid(f"tools[{i}].function.parameters", f"the tool's parameters: {error}") from None
    if not tools or choice == "none":
        return None
    if choice is None or isinstance(choice, str):
        return ToolContext(tools, choice or "auto", body.parallel_tool_calls)
    if choice.function.name not in names:
        raise invalid("tool_choice", f"tool_choice names {choice.function.name!r}, which is not in tools")
    return ToolContext(tools, choice.function.name, False)


def tool_constraint(ctx: ToolContext | None, body: ChatCompletionRequest) -> OutputConstraint | None:
    """The grammar the output follows because of the tools: calls only ("required" / named), calls or
    the response_format JSON ("auto" with a JSON response_format); None leaves the request's own."""
    if ctx is None:
        return None
    calls = _calls_rules(ctx)
    if ctx.choice == "auto":
        answer = output_constraint(body)
        if answer is None or answer.option != "json_schema":
            return None
        grammar = f"start: calls | %json {_styled(answer.value)}\n{calls}"
        return OutputConstraint("grammar", grammar, answer.field)
    return OutputConstraint("grammar", f"start: calls\n{calls}", "tools")


def _calls_rules(ctx: ToolContext) -> str:
    """Lark rules for ``calls``: one (or, in parallel, several) <tool_call> blocks of the allowed tools."""
    allowed = [t for t in ctx.tools if ctx.choice in ("auto", "required", t.function.name)]
    branches = [
        {
            "type": "object",
            "properties": {"name": {"const": t.function.name}, "arguments": parameters(t)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in allowed
    ]
    schema = branches[0] if len(branches) == 1 else {"anyOf": branches}
    repeat = ' ("\\n" call)*' if ctx.parallel else ""
    return f'calls: call{repeat}\ncall: "{OPEN}\\n" %json {_styled(schema)} "\\n{CLOSE}"'


def _styled(schema: Any) -> str:
    """A schema for Lark's %json with gptkit's JSON style (unless the schema sets its own)."""
    if isinstance(schema, dict):
        schema = {"x-guidance": JSON_STYLE, **schema}
    return json.dumps(schema)


# ---- rendering the conversation --------------------------------------------------------------------
def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the model's chat template renders ``tools`` itself."""
    return "tools" in (getattr(tokenizer, "chat_template", None) or "")


def chat_inputs(
    tokenizer: Any, messages: list[ChatMessage], ctx: ToolContext | None
) -> tuple[list[dict[str, Any]], list[dict] | None]:
    """The messages as template dicts and the ``tools`` template variable (None: not rendered)."""
    native = template_supports_tools(tokenizer)
    dicts = [_message_dict(m, i, native) for i, m in enumerate(messages)]
    if ctx is None:
        return dicts, None
    tools = [tool.model_dump(exclude_none=True) for tool in ctx.tools]
    if native:
        return dicts, tools
    section = TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
    if dicts and dicts[0]["role"] == "system":
        dicts[0] = {**dicts[0], "content": f"{dicts[0]['content']}\n\n{section}"}
    else:
        dicts.insert(0, {"role": "system", "content": section})
    return dicts, None


def _message_dict(message: ChatMessage, index: int, native: bool) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    out: dict[str, Any] = {"role": role, "content": message.text()}
    if message.name:
        out["name"] = message.name
    calls = [(c, _arguments(c.function.arguments, index, j)) for j, c in enumerate(message.tool_calls or [])]
    if role == "tool" and not native:
        return {"role": "user", "content": f"<tool_response>\n{out['content']}\n</tool_response>"}
    if role == "tool" and message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if calls and native:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": args}}
            for c, args in calls
        ]
    elif calls:
        blocks = [_call_text(c.function.name, args) for c, args in calls]
        out["content"] = "\n".join([out["content"], *blocks] if out["content"] else blocks)
    return out


def _arguments(text: str, message: int, call: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        field = f"messages[{message}].tool_calls[{call}].function.arguments"
        raise invalid(field, f"{field} must be JSON text") from None


def _call_text(name: str, arguments: Any) -> str:
    return f"{OPEN}\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n{CLOSE}"


# ---- reading calls out of the output ----------------------------------------------------------------
class ToolCallParser:
    """Splits generated text into content and tool calls as it streams, in OpenAI's delta shapes.

    Text outside ``<tool_call>`` blocks is content (whitespace next to calls is dropped); a
    block that is not a call of an offered tool stays content; with ``parallel`` off only the first call
    counts.
    """

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.buffer = ""
        self.in_call = False
        self.spaces = ""  # whitespace held until other content follows (or dropped after calls)
        self.calls: list[dict[str, Any]] = []

    def feed(self, text: str) -> list[dict[str, Any]]:
        """Deltas for newly generated ``text``: {"content": ...} or {"tool_calls": [...]}."""
        self.buffer += text
        deltas: list[dict[str, Any]] = []
        while True:
            marker = CLOSE if self.in_call else OPEN
            at = self.buffer.find(marker)
            if at < 0:
                break
            piece, self.buffer = self.buffer[:at], self.buffer[at + len(marker) :]
            deltas += self._call(piece) if self.in_call else self._content(piece)
            self.in_call = not self.in_call
        if not self.in_call:
            keep = _partial_suffix(self.buffer, OPEN)
            deltas += self._content(self.buffer[: len(self.buffer) - keep])
            self.buffer = self.buffer[len(self.buffer) - keep :]
        return deltas

    def finish(self) -> list[dict[str, Any]]:
        """Deltas for what is left at the end: an unfinished block or held text, as content."""
        rest = (OPEN if self.in_call else "") + self.buffer
        self.buffer, self.in_call = "", False
        deltas = self._content(rest)
        if self.spaces and not self.calls:
            deltas.append({"content": self.spaces})
        self.spaces = ""
        return deltas

    def _content(self, text: str) -> list[dict[str, Any]]:
        """Content deltas; trailing whitespace waits (a call may follow, and then it is dropped)."""
        text = self.spaces + text
        body = text.rstrip()
        self.spaces = text[len(body) :]
        return [{"content": body}] if body else []

    def _call(self, inner: str) -> list[dict[str, Any]]:
        call = _parse_call(inner, self.ctx.names)
        if call is None:
            return self._content(f"{OPEN}{inner}{CLOSE}")
        if self.calls and not self.ctx.parallel:
            return []
        self.spaces = ""
        index, call_id = len(self.calls), f"call_{secrets.token_hex(12)}"
        name, arguments = call
        self.calls.append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        )
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return [
            {"tool_calls": [head]},
            {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]},
        ]


def _parse_call(inner: str, names: set[str]) -> tuple[str, str] | None:
    """(name, arguments as JSON text) of a block's ``{"name": ..., "arguments": {...}}``, or None."""
    try:
        call = json.loads(inner)
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or call.get("name") not in names:
        return None
    arguments = call.get("arguments", call.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return call["name"], json.dumps(arguments, ensure_ascii=False)


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that begins ``marker`` (it may be the start of one)."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


def parse_tool_calls(ctx: ToolContext, text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """A whole answer's (content or None, tool calls)."""
    parser = ToolCallParser(ctx)
    deltas = parser.feed(text) + parser.finish()
    content = "".join(d.get("content", "") for d in deltas)
    return (content or None) if parser.calls else content, parser.calls


def with_tool_calls(choice: dict[str, Any], ctx: ToolContext | None) -> dict[str, Any]:
    """A chat choice whose answer holds calls as OpenAI returns it: ``message.tool_calls``, the content
    left around them (None when there is none), finish reason "tool_calls". An answer cut short by
    max_tokens is left as it is."""
    message = choice["message"]
    if ctx is None or choice["finish_reason"] != "stop":
        return choice
    content, calls = parse_tool_calls(ctx, message["content"])
    if not calls:
        return choice
    return {
        **choice,
        "message": {**message, "content": content, "tool_calls": calls},
        "finish_reason": "tool_calls",
    }
