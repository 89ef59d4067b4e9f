"""Shared test helpers: a deterministic judge (no network in tests) and the message of a failing load."""
import pytest

from mmalign.errors import MMAlignError
from mmalign.eval.official.judge import Judge


def _scripted(outputs: dict[str, str], settings=None, calls=None) -> Judge:
    """A judge that answers with outputs[key] for the key found in the last message (and logs its calls)."""
    def fn(messages):
        text = messages[-1]["content"]
        if calls is not None:
            calls.append(messages)
        return next(out for key, out in outputs.items() if key in text)
    return Judge(fn, "scripted-judge-v1", settings or {"temperature": 0.0})


@pytest.fixture
def scripted():
    """``scripted(outputs, settings=None, calls=None)`` builds a judge answering outputs[key] for the key found
    in the last message."""
    return _scripted


@pytest.fixture
def load_error():
    """``load_error(load, path)``: the MMAlignError message ``load(path)`` raises (the test fails if none)."""
    def message(load, path) -> str:
        with pytest.raises(MMAlignError) as e:
            load(path)
        return str(e.value)
    return message
