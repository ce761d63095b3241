"""Request bodies of the OpenAI-compatible API (pydantic). Unknown fields are ignored, as OpenAI clients
send extras; every constraint error names its field, which becomes the error's ``param``.

Types are checked here. The values of sampling options are checked once, by SamplingParams (through
GenerationConfig's rules), and their defaults live there too: an unset option here is ``None``. Only the
API's own narrower ranges (OpenAI's, vLLM's) are declared here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from gptkit.checks import is_int

Int = Annotated[int, Strict()]  # no bools, strings or floats where an integer is expected
Float = Annotated[float, Strict()]  # ints are fine, strings and bools are not
Bool = Annotated[bool, Strict()]


def _encodable(text: str) -> str:
    """JSON may carry lone surrogates (\\ud800) that no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return text


Text = Annotated[str, Strict(), AfterValidator(_encodable)]
MAX_LOGPROBS = 20  # OpenAI's limit for completions' logprobs and chat's top_logprobs


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class StreamOptions(_Body):
    include_usage: Bool = False


class JSONSchemaFormat(_Body):
    """OpenAI's ``response_format.json_schema``."""

    name: str = Field(default="response", max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: Bool | None = None


class ResponseFormat(_Body):
    """OpenAI's ``response_format``: text, any JSON object, or JSON following a schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JSONSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object with the schema")
        return self


class StructuredOutputs(_Body):
    """vLLM's ``structured_outputs``: one of json (a schema), regex, grammar, choice, json_object."""

    json_: dict[str, Any] | str | None = Field(default=None, alias="json")
    regex: Text | None = None
    grammar: Text | None = None
    choice: list[Text] | None = Field(default=None, min_length=1)
    json_object: Bool | None = None


class SamplingOptions(_Body):
    """Options shared by completions and chat completions (vLLM's extras included)."""

    model: str | None = None  # OpenAI requires it; we accept it omitted
    temperature: Float | None = Field(default=None, le=2)
    top_p: Float | None = None
    n: Int = Field(default=1, ge=1)
    stream: Bool = False
    stream_options: StreamOptions | None = None
    stop: Text | list[Text] | None = None
    seed: Int | None = None
    presence_penalty: Float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: Float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Float] | None = None
    user: str | None = None
    # vLLM's extra sampling options
    top_k: Int | None = Field(default=None, ge=-1)
    min_tokens: Int | None = None
    repetition_penalty: Float | None = Field(default=None, ge=0.01, le=100)
    ignore_eos: Bool | None = None
    stop_token_ids: list[Int] | None = None
    speculative: Bool = True  # gptkit's: false opts this request out of the server's speculative decoding
    # output constraints: OpenAI's response_format, vLLM's structured_outputs and guided_* fields
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: Text | None = None
    guided_grammar: Text | None = None
    guided_choice: list[Text] | None = Field(default=None, min_length=1)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_strings(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise ValueError("must be a string or a list of strings")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"keys must be token ids, got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"biases must be in [-100, 100], got {bias} for token {key}")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingOptions):
    """POST /v1/completions."""

    prompt: Text | list[Text] | list[int] | list[list[int]]
    max_tokens: Int | None = None  # None: SamplingParams' default
    logprobs: Int | None = Field(default=None, le=MAX_LOGPROBS)
    echo: Bool = False
    suffix: str | None = None
    best_of: Int | None = Field(default=None, ge=1)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        """A string, a list of strings, a list of token ids or a list of such lists; never empty."""
        if isinstance(value, str):
            return _non_empty_text(value)
        if not isinstance(value, list) or not value:
            raise ValueError("must be a non-empty string, list of strings, or list of token ids")
        if all(isinstance(p, str) for p in value):
            return [_non_empty_text(p) for p in value]
        if all(is_int(t) for t in value):
            return value
        if all(isinstance(p, list) and p and all(is_int(t) for t in p) for p in value):
            return value
        raise ValueError("must be a string, a list of strings, a list of token ids or a list of such lists")


class FunctionCall(_Body):
    name: Text
    arguments: Text = "{}"  # JSON text, as OpenAI sends it


class ToolCall(_Body):
    """A call in an assistant message of the conversation so far."""

    id: Text = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionDefinition(_Body):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: Text | None = None
    parameters: dict[str, Any] | None = None  # a JSON Schema; None: no parameters
    strict: Bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ContentPart(_Body):
    type: str
    text: Text | None = None


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: Text | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: Text | None = None  # a tool message: the call it answers

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                if part.type != "text" or part.text is None:
                    raise ValueError(f"only text content parts are supported, got type {part.type!r}")
        return value

    def text(self) -> str:
        """The message's content as one string (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content)


class ChatCompletionRequest(SamplingOptions):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Int | None = Field(default=None, ge=1)
    max_completion_tokens: Int | None = Field(default=None, ge=1)
    logprobs: Bool = False
    top_logprobs: Int | None = Field(default=None, le=MAX_LOGPROBS)
    add_generation_prompt: Bool = True  # vLLM's extra
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None  # default: "auto" with tools, "none" without
    parallel_tool_calls: Bool = True


class TokenizeRequest(_Body):
    """POST /tokenize (vLLM's shape): a prompt, or chat messages rendered with the chat template."""

    model: str | None = None
    prompt: Text | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: Bool = True
    add_generation_prompt: Bool = True
    return_token_strs: Bool = False


class DetokenizeRequest(_Body):
    """POST /detokenize (vLLM's shape)."""

    model: str | None = None
    tokens: list[Int]


def _non_empty_text(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return _encodable(text)
