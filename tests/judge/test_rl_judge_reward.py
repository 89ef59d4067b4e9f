"""An OpenAI-compatible judge as an online-RL reward, set up from the RL config alone (``rewards: {scorer: 1}``,
``scorer.name: judge``): each completion is sent with its image, the reply's rating is the reward, and a reply
without one gets its group's mean."""
from mmalign.config import load_config
from mmalign.rl.config import RLConfig
from mmalign.rl.trainer import reward_functions
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

from .conftest import completion


def test_a_judge_rates_each_completion_of_a_group(scripted):
    server = scripted([{"body": completion(text)} for text in ["Rating: 7", "I cannot tell", "[[2]]", "9/10"]])
    cfg = load_config(RLConfig, None, ["rewards={scorer: 1.0}", "scorer.name=judge", "scorer.judge.model=scripted",
                                       f"scorer.judge.base_url={server.url}"])
    first, second = (make_example(WorldConfig(), "caption", "val", i) for i in range(2))
    captions = ["a red circle .", "a star .", "a square .", "a cross ."]
    assert reward_functions(cfg)["scorer"](captions, [first, first, first, second]) == [7.0, 4.5, 2.0, 9.0]
    assert len(server.requests) == 4
    sent = server.requests[1]["body"]["messages"][0]["content"]
    assert sent[0]["type"] == "image_url" and sent[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert "a star ." in sent[-1]["text"] and first["prompt"] in sent[-1]["text"]
