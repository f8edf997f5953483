"""``scale serve`` with the official OpenAI client, and DSPy itself, as its clients."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import dspy
import openai
import pytest
import uvicorn
from world import install

from scale.programs import SCALE, CoT, Routing, system1, system2
from scale.serve import create_app

PROBLEM = "Problem A: compute the total."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(programs, **options):
    """The app on a free loopback port, in a background thread; yields its /v1 URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(programs, **options), host="127.0.0.1", port=port, log_level="error"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


def scale_program() -> SCALE:
    return SCALE(
        system1("scripted/s1", adapter="native"),
        system2("scripted/s2", adapter="native"),
        routing=Routing(estimator="self", threshold=0.4),
    )


@pytest.fixture
def world(scripted):
    install(scripted)
    return scripted


def client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)


def test_completion_models_and_usage(world):
    with serving({"tuned": scale_program()}) as url:
        reply = client(url).chat.completions.create(
            model="tuned", messages=[{"role": "user", "content": PROBLEM}]
        )
        models = client(url).models.list()
    assert [m.id for m in models.data] == ["tuned"]
    content = reply.choices[0].message.content
    assert content.endswith("Final answer: \\boxed{10}") and "Step 1 (System 1" in content
    extra = reply.model_extra["scale"]
    assert [s["system"] for s in extra["steps"]] == [1, 2]
    assert reply.usage.total_tokens == extra["usage"]["total_tokens"] > 0
    assert extra["usage"]["lm_calls"] == len(world.calls)  # every call the program made


def test_streaming_sends_each_step_then_the_answer(world):
    with serving({"tuned": scale_program()}) as url:
        stream = client(url).chat.completions.create(
            model="tuned", messages=[{"role": "user", "content": PROBLEM}], stream=True
        )
        chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts[0].startswith("Problem rated") or texts[0].startswith("Decomposed")
    assert any(t.startswith("Step 1") for t in texts) and any(t.startswith("Step 2") for t in texts)
    assert texts[-1] == "Final answer: \\boxed{10}"
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and last.usage.total_tokens > 0


@pytest.mark.parametrize(
    ("messages", "model", "status", "kind"),
    [
        ([{"role": "user", "content": "x" * 30_000}], "tuned", 400, "invalid_request_error"),
        ([{"role": "user", "content": "   "}], "tuned", 400, "invalid_request_error"),
        ([{"role": "system", "content": "hi"}], "tuned", 400, "invalid_request_error"),
        ([{"role": "user", "content": PROBLEM}], "other", 404, "model_not_found"),
    ],
)
def test_bad_requests_get_openai_style_errors(world, messages, model, status, kind):
    with serving({"tuned": scale_program()}) as url, pytest.raises(openai.APIStatusError) as caught:
        client(url).chat.completions.create(model=model, messages=messages)
    assert caught.value.status_code == status and caught.value.body["type"] == kind
    assert world.calls == []


def test_a_key_is_required_when_set(world):
    with serving({"tuned": scale_program()}, api_key="sesame") as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").chat.completions.create(
                model="tuned", messages=[{"role": "user", "content": PROBLEM}]
            )
        reply = client(url, "sesame").chat.completions.create(
            model="tuned", messages=[{"role": "user", "content": PROBLEM}]
        )
    assert reply.choices[0].message.content.endswith("\\boxed{10}")


def slow_world(scripted, seconds: float) -> None:
    def reply(prompt, params):
        time.sleep(seconds)
        return "\\boxed{10}"

    scripted.rules.append((".*", reply))


def test_too_many_requests_in_flight_get_429_and_the_deadline_504(scripted):
    slow_world(scripted, 1.5)
    program = CoT(system2("scripted/s2", adapter="native"))
    with serving({"cot": program}, max_in_flight=1) as url:
        results: dict[int, object] = {}

        def ask(i: int) -> None:
            try:
                results[i] = client(url).chat.completions.create(
                    model="cot", messages=[{"role": "user", "content": f"Problem {i}: go."}]
                )
            except openai.APIStatusError as exc:
                results[i] = exc

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.2)
        for t in threads:
            t.join(30)
    refused = [r for r in results.values() if isinstance(r, openai.RateLimitError)]
    answered = [r for r in results.values() if not isinstance(r, Exception)]
    assert len(answered) == 1 and len(refused) == 2
    assert refused[0].response.headers["retry-after"] == "2"
    with (
        serving({"cot": program}, deadline=0.5) as url,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        client(url).chat.completions.create(
            model="cot", messages=[{"role": "user", "content": "Problem 9: go."}]
        )
    assert caught.value.status_code == 504


def test_a_client_that_disconnects_frees_its_slot(scripted):
    import httpx

    slow_world(scripted, 3)
    program = CoT(system2("scripted/s2", adapter="native"))
    with serving({"cot": program}, max_in_flight=1) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{url}/chat/completions",
                json={"messages": [{"role": "user", "content": "P 1"}]},
                timeout=0.5,
            )
        time.sleep(0.8)  # the server notices at its next poll
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
    assert health["in_flight"] == 0


def test_dspy_calls_the_endpoint_as_an_openai_compatible_model(world):
    with serving({"tuned": scale_program()}) as url:
        lm = dspy.LM("openai/tuned", api_base=url, api_key="none", cache=False, max_tokens=100)
        reply = lm(messages=[{"role": "user", "content": PROBLEM}])
    assert reply[0].endswith("\\boxed{10}")
