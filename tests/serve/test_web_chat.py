"""The web chat page at `/`, driven in headless Chromium against the real server: streamed greedy answers,
rendered as sanitized Markdown, with an empty-state hint and a tokens-per-second line."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MAX_TOKENS = 12
SYSTEM = "You are a concise assistant."

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason="needs Debian's chromium and chromedriver at /usr/bin (apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)  # never downloads a driver
    yield driver
    driver.quit()


def greedy_answer(server, messages: list[dict]) -> str:
    """The model's own greedy answer (``generate``, not the server) to chat-templated ``messages``."""
    tokenizer = server.tokenizer
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    output = server.model.generate(ids, max_new_tokens=MAX_TOKENS)
    return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)


def fill(browser, element_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def ask(browser, text: str, turn: int):
    """Type a message, press Send, wait for the answer to finish; returns the answer's element."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    fill(browser, "message", text)
    browser.find_element(By.ID, "send").click()

    def finished(driver):
        answers = driver.find_elements(By.CSS_SELECTOR, "#messages .assistant")
        done = len(answers) == turn and driver.find_element(By.ID, "send").is_enabled()
        return answers[-1] if done and answers[-1].get_property("textContent") else None

    return WebDriverWait(browser, 120).until(finished)


def raw_text(browser, element) -> str:
    """The answer as the model wrote it (the element shows it rendered as Markdown)."""
    return browser.execute_script("return arguments[0].rawText", element)


def test_the_page_streams_greedy_answers_and_keeps_the_conversation(browser, bundled_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(bundled_server.url.rstrip("/") + "/")
    hint = browser.find_element(By.ID, "empty-hint")
    assert "Start a conversation" in hint.get_property("textContent")
    if bundled_server.api_key:  # the page shows the server's own 401 message until a key is entered
        refusal = httpx.get(f"{bundled_server.base_url}/models").json()["error"]["message"]
        error = WebDriverWait(browser, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#messages .error")
        )
        assert error[0].get_property("textContent") == refusal
        browser.find_element(By.ID, "reset").click()
    browser.find_element(By.CSS_SELECTOR, "details summary").click()  # open the settings
    fill(browser, "api-key", bundled_server.api_key or "")
    fill(browser, "temperature", "0")
    fill(browser, "max-tokens", str(MAX_TOKENS))
    fill(browser, "system", SYSTEM)  # also moves the focus: the API key's change event reloads the models
    model = WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.getElementById('model').value")
    )
    assert model == bundled_server.model_name

    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert browser.find_element(By.ID, "empty-hint").is_displayed()
    first = ask(browser, messages[-1]["content"], turn=1)
    assert not browser.find_element(By.ID, "empty-hint").is_displayed()
    assert raw_text(browser, first) == greedy_answer(bundled_server, messages)
    assert first.find_elements(By.TAG_NAME, "p")  # rendered through marked
    assert int(first.get_attribute("data-chunks")) > 1  # it arrived in pieces, as they were generated
    stats = browser.find_element(By.CSS_SELECTOR, "#messages .stats")
    assert 1 <= int(stats.get_attribute("data-tokens")) <= MAX_TOKENS
    assert float(stats.get_attribute("data-tokens-per-second")) > 0 and "tokens/s" in stats.text

    messages += [
        {"role": "assistant", "content": raw_text(browser, first)},
        {"role": "user", "content": "And of Italy?"},
    ]
    second = ask(browser, messages[-1]["content"], turn=2)
    assert raw_text(browser, second) == greedy_answer(bundled_server, messages)
    assert not browser.find_elements(By.CSS_SELECTOR, "#messages .error")
    browser.find_element(By.ID, "reset").click()
    assert browser.find_element(By.ID, "empty-hint").is_displayed()


MARKDOWN = (
    "# Title\n\nSome **bold** text.\n\n```python\nprint('hi')\n```\n\n"
    '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>[link](javascript:alert(1))'
)


def test_answers_render_markdown_and_code_sanitized(browser, bundled_server):
    from selenium.webdriver.common.by import By

    browser.get(bundled_server.url.rstrip("/") + "/")
    bubble = browser.execute_script(
        "const b = addMessage('assistant', ''); setAnswer(b, arguments[0]); return b;", MARKDOWN
    )  # the function each streamed delta goes through
    code = bubble.find_element(By.CSS_SELECTOR, "pre code")
    assert code.text == "print('hi')"
    assert bubble.find_element(By.TAG_NAME, "h1").text == "Title"
    assert bubble.find_element(By.TAG_NAME, "strong").text == "bold"
    html = bubble.get_property("innerHTML")
    assert "onerror" not in html and "<script" not in html and "javascript:" not in html
    assert browser.execute_script("return window.pwned") is None
    assert raw_text(browser, bubble) == MARKDOWN
    for name in ("marked.umd.js", "purify.min.js"):  # served by the server itself: the page works offline
        response = httpx.get(f"{bundled_server.url}/static/{name}")
        assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert httpx.get(f"{bundled_server.url}/static/index.html").status_code == 404
