"""The official `anthropic` Python SDK, pointed at flowgate (base URL and key changed, nothing
else), gets Anthropic-shaped messages, streams, tool use, token counts and error classes,
while the upstream behind the model speaks OpenAI's dialect."""

import anthropic
import pytest

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(gateway, key=None):
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key or gateway.tenant_key, max_retries=0)


def test_message(gateway):
    message = client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        system="Answer briefly.",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! Ask away."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "gpt-4o-mini"
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("The capital of France is Paris.")
    # Exactly what the upstream reported, not an estimate.
    assert message.usage.input_tokens == 26
    assert message.usage.output_tokens == 21


def test_stream(gateway):
    with client(gateway).messages.stream(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "The capital of France is Paris."
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 7
    # Input tokens are not lost in a translated stream.
    assert final.usage.input_tokens == 26


def test_tool_use(gateway):
    message = client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    )
    assert message.stop_reason == "tool_use"
    tool_use = [block for block in message.content if block.type == "tool_use"]
    assert len(tool_use) == 1
    assert tool_use[0].name == "get_weather"
    assert tool_use[0].input == {"city": "Paris"}
    assert tool_use[0].id
    assert message.usage.input_tokens == 30 and message.usage.output_tokens == 12


def test_streamed_tool_use(gateway):
    with client(gateway).messages.stream(
        model="gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    tool_use = [block for block in final.content if block.type == "tool_use"]
    assert [(block.name, block.input) for block in tool_use] == [("get_weather", {"city": "Paris"})]
    assert final.usage.output_tokens == 12


def test_tool_result_round_trip(gateway):
    message = client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[
            {"role": "user", "content": "What is the capital of France?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "France"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "Paris"}]},
        ],
    )
    assert message.content[0].text.startswith("The capital of France is Paris.")


def test_count_tokens(gateway):
    counted = client(gateway).messages.count_tokens(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert 5 <= counted.input_tokens <= 40


def test_wrong_key_is_authentication_error(gateway):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client(gateway, key="fgk_wrong").messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_admin_key_is_permission_denied(gateway):
    with pytest.raises(anthropic.PermissionDeniedError):
        client(gateway, key=gateway.admin_key).messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )


def test_unknown_model_is_not_found(gateway):
    with pytest.raises(anthropic.NotFoundError) as caught:
        client(gateway).messages.create(
            model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_untranslatable_content_is_a_bad_request(gateway):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(gateway).messages.create(
            model="gpt-4o-mini",
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                        }
                    ],
                }
            ],
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
