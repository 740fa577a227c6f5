from engine.config import Settings, apply_options, describe, parse_set_arguments


def test_camel_case_options_apply():
    settings, warnings = apply_options(Settings(), {"maxTokens": 64, "multiline": "never", "temperature": 0.2})
    assert warnings == []
    assert (settings.max_tokens, settings.multiline, settings.temperature) == (64, "never", 0.2)


def test_unknown_option_warns_and_is_ignored():
    settings, warnings = apply_options(Settings(), {"maxTokenz": 3})
    assert settings == Settings()
    assert len(warnings) == 1 and "unknown option 'maxTokenz'" in warnings[0] and "maxTokens" in warnings[0]


def test_bad_values_warn_and_keep_the_default():
    base = Settings()
    settings, warnings = apply_options(
        base, {"maxTokens": "many", "multiline": "sometimes", "debounceMs": -5, "temperature": True}
    )
    assert settings == base
    assert len(warnings) == 4
    assert any("one of auto, always, never" in w for w in warnings)
    assert any("at least 0" in w for w in warnings)


def test_integral_float_is_accepted_for_int_options():
    settings, warnings = apply_options(Settings(), {"maxTokens": 32.0})
    assert warnings == [] and settings.max_tokens == 32 and isinstance(settings.max_tokens, int)


def test_set_arguments_parse_json_then_text():
    options = parse_set_arguments(["maxTokens=12", "openaiBaseUrl=http://127.0.0.1:8080/v1", "temperature=0.5"])
    assert options == {"maxTokens": 12, "openaiBaseUrl": "http://127.0.0.1:8080/v1", "temperature": 0.5}


def test_every_option_is_documented():
    names = [name for name, _, doc in describe() if doc]
    assert {"model", "backend", "openaiBaseUrl", "maxTokens", "temperature", "debounceMs", "contextTokens",
            "multiline", "timeBudgetMs"} <= set(names)
    assert len(names) == len(describe())
