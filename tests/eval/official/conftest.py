"""A deterministic judge for the judged benchmarks: no network in tests."""
import pytest

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
