"""The package's layers (docs/architecture.md), enforced over every import, function-local ones included.

An import may only go down the list in LAYERS, or stay inside its own package; packages that share a layer
are independent of each other. A module missing from LAYERS fails the test, so a new one is placed on
purpose. ``from gptkit import X`` counts as importing the submodule X when there is one, and otherwise as
importing the top-level package (the public facade, the highest layer).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gptkit"

# Low to high. Each tuple is one layer; its members are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_lazy", "memory", "checks", "compiling"),  # nothing from gptkit but errors
    ("config", "checksums"),  # the architecture's switches; file hashes
    ("registry",),  # model names -> files
    ("kernels",),  # native CPU ops
    ("model",),  # the pure nn.Module: no files, no generation
    ("quant",),  # quantized layers and block formats
    ("weights",),  # GGUF / safetensors <-> GPT4Config and the model
    ("tokenizer",),  # cl100k, GGUF vocabularies, tokenizer.json, chat templates
    ("generation",),  # processors, sampling, beams, streaming
    ("engine",),  # continuous batching
    ("modeling",),  # GPT4LMHeadModel: from_pretrained / save_pretrained / generate
    ("loader", "scoring"),  # gptkit.load(); the log-likelihood scorer shared by tasks and eval
    ("options",),  # the command line's shared options
    ("data",),  # corpora, shards, scrubbing, tokenizer training
    ("train", "tasks"),  # training loop, fine-tuning; the five applications
    ("eval",),  # evaluation harness
    ("serve",),  # the OpenAI-compatible server and the chat REPL
    ("cli",),  # the command line
    ("__main__", "__init__"),  # `python -m gptkit`; the public facade (lazy names)
)
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    """The top-level unit of a module: gptkit.weights.loading -> weights; gptkit -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(dotted: str) -> bool:
    path = SRC.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, imported gptkit module) for every import statement in the file, at any depth."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else base))
    return [(line, name) for line, name in found if name == "gptkit" or name.startswith("gptkit.")]


def _all_imports() -> dict[str, list[tuple[int, str]]]:
    return {_module_name(path): _imports(path) for path in sorted(SRC.rglob("*.py"))}


IMPORTS = _all_imports()


def test_every_package_has_a_layer():
    unplaced = sorted({_package(module) for module in IMPORTS} - set(LEVEL))
    assert not unplaced, f"add these to LAYERS (and docs/architecture.md): {unplaced}"


def _against_layers(imports_by_module: dict[str, list[tuple[int, str]]]) -> list[str]:
    wrong = []
    for module, imports in imports_by_module.items():
        source = _package(module)
        for line, target in imports:
            destination = _package(target)
            if destination == source or destination not in LEVEL or source not in LEVEL:
                continue
            if LEVEL[destination] >= LEVEL[source]:
                wrong.append(f"{module}:{line} imports {target} ({source} -> {destination})")
    return wrong


def test_imports_only_go_down():
    wrong = _against_layers(IMPORTS)
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each a cycle's members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("level", ["package", "module"])
def test_no_import_cycles(level):
    """No cycle between packages, nor between the modules inside one (package __init__ re-exports aside)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, imports in IMPORTS.items():
        for _, target in imports:
            if level == "package":
                if _package(module) != _package(target) and _package(module) != "__init__":
                    graph[_package(module)].add(_package(target))
            elif target != module and not _is_package(target) and not _is_package(module):
                graph[module].add(target)
    assert not _cycles(graph)


def _is_package(module: str) -> bool:
    return (SRC.parent.joinpath(*module.split(".")) / "__init__.py").is_file()


def test_the_checker_sees_function_local_and_relative_imports(tmp_path):
    """The scan is real: upward imports hidden in a function, relative or absolute, are reported."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import torch\n\ndef f():\n    from ..serve import app\n    import gptkit.engine.engine\n"
    )
    imports = _imports(probe, module="gptkit.model.probe")
    assert imports == [(4, "gptkit.serve.app"), (5, "gptkit.engine.engine")]
    wrong = _against_layers({"gptkit.model.probe": imports})
    assert [w.split(" (")[1] for w in wrong] == ["model -> serve)", "model -> engine)"]


MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_no_source_file_over_400_lines_and_no_function_over_60():
    """Short files and functions (docs/architecture.md): split a module or a function that outgrows them."""
    too_long = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(SRC)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}(): {lines} lines")
    assert not too_long, "\n".join(too_long)
