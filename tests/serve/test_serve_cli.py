"""`gptkit serve` as a real subprocess: it starts, answers /health, serves one request, stops on SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from gptkit.cli import build_parser

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_subprocess_answers_a_request(tmp_path, bundled_gguf):
    port = free_port()
    key_file = tmp_path / "key"
    key_file.write_text("secret-key\n")
    command = [sys.executable, "-m", "gptkit", "serve", "smollm2-135m-instruct", "--port", str(port),
               "--api-key-file", str(key_file), "--max-batch-size", "2", "--max-seq-len", "256",
               "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "".join(lines)
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gptkit serve did not become healthy"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=url + "/v1", api_key="secret-key", max_retries=0)
        response = client.chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
        )
        assert response.choices[0].message.content
        assert client.models.list().data[0].max_model_len == 256
        startup = [line for line in lines if line.startswith("gptkit serve:")]
        assert startup == [
            f"gptkit serve: smollm2-135m-instruct at {url}/v1 | web chat: {url}/ | "
            "auth: API key required (Authorization: Bearer KEY)\n"
        ]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_errors_are_one_line_and_exit_1(capsys, tmp_path):
    from gptkit.cli import main

    empty = tmp_path / "empty"
    empty.write_text("")
    assert main(["serve", "smollm2-135m-instruct", "--api-key-file", str(empty)]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert main(["serve", "/no/such/model.gguf", "--port", "0"]) == 1
    assert "error" in capsys.readouterr().err


def test_serve_options_parse():
    args = build_parser().parse_args(["serve", "m", "--port", "9", "--api-key", "k", "--max-queue", "3"])
    assert (args.model, args.port, args.api_key, args.max_queue) == ("m", 9, "k", 3)


@pytest.mark.parametrize("command", ["serve", "chat"])
def test_compile_is_off_unless_asked(command):
    assert build_parser().parse_args([command, "m", "--compile"]).compile is True
    assert build_parser().parse_args([command, "m"]).compile is False
