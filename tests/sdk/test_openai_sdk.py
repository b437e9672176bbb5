"""The official `openai` Python SDK, pointed at flowgate, gets the provider's answers,
streams, usage and error classes."""

import json

import openai
import pytest


def client(gateway, key=None):
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key or gateway.tenant_key, max_retries=0)


def test_chat_completion(gateway):
    completion = client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert completion.choices[0].message.role == "assistant"
    assert "Paris" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 26
    assert completion.usage.completion_tokens == 21


def test_raw_response_headers(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert float(raw.headers["x-flowgate-overhead-ms"]) >= 0.0


def test_streamed_chat_completion(gateway):
    stream = client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    finish = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "The capital of France is Paris."
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 7


def test_embeddings(gateway):
    result = client(gateway).embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(result.data[0].embedding) == 4


def test_models_list(gateway):
    ids = [model.id for model in client(gateway).models.list()]
    assert ids == ["gpt-4o-mini", "text-embedding-3-small", "claude-sonnet"]


def test_wrong_key_is_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, key="fgk_wrong").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_admin_key_cannot_infer(gateway):
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway, key=gateway.admin_key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )


def test_unknown_model_is_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"


def test_tool_calls_pass_through(gateway):
    completion = client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
    )
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Paris"}'


def test_chat_from_an_anthropic_upstream(gateway):
    completion = client(gateway).chat.completions.create(
        model="claude-sonnet",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    )
    assert completion.choices[0].message.content == "The capital of France is Paris."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-sonnet"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (21, 9)
    # The upstream got Anthropic's dialect: system hoisted, max_tokens set, its own key.
    sent = gateway.anthropic_upstream.last_body
    assert sent["system"] == "Be brief." and sent["model"] == "claude-upstream"
    assert sent["max_tokens"] > 0
    headers = gateway.anthropic_upstream.last_headers
    assert headers["x-api-key"] == "sk-ant-test-credential"
    assert headers["anthropic-version"] == "2023-06-01"


def test_stream_from_an_anthropic_upstream(gateway):
    stream = client(gateway).chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "The capital of France is Paris."
    assert finish == "stop"
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (21, 9)


def test_tool_call_from_an_anthropic_upstream(gateway):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    completion = client(gateway).chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
    )
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    stream = client(gateway).chat.completions.create(
        model="claude-sonnet",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        stream=True,
    )
    name, arguments = None, ""
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                name = delta.function.name or name
                arguments += delta.function.arguments or ""
    assert name == "get_weather" and json.loads(arguments) == {"city": "Paris"}
