"""A rewriting model behind an OpenAI-compatible endpoint makes POVID/HA-DPO text negatives on real data."""
from mmalign.construct.text import judge_rewriter, rewrite_negative
from mmalign.data.preference import PreferenceRecord
from mmalign.judge import JudgeClient, JudgeConfig

from .conftest import completion


def test_judge_rewriter_over_http(scripted):
    server = scripted([{"body": completion("a red car and a dog on a green lawn .")}, {"body": completion("  ")}])
    client = JudgeClient(JudgeConfig(base_url=server.url, model="rewriter"))
    rewrite = judge_rewriter(lambda messages: client.chat(messages).text)
    record = PreferenceRecord(id="r", prompt="describe the image .", images=[], chosen="a red car on a green lawn .",
                              rejected="")
    pair = rewrite_negative(record, rewrite)
    assert pair.rejected == "a red car and a dog on a green lawn ."
    assert pair.rejected[slice(*pair.rejected_spans[0])] == "and a dog"       # DDPO span: what was written in
    sent = server.requests[0]["body"]["messages"][0]["content"]
    assert "a red car on a green lawn ." in (sent if isinstance(sent, str) else sent[-1]["text"])
    assert rewrite_negative(record, rewrite) is None                        # an empty reply: no rewrite, no pair
