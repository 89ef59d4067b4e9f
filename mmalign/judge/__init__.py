"""Judges: an OpenAI-compatible chat client with retries, a response cache and parse-failure counts.

``mmalign serve`` (``mmalign.serve``) is the local endpoint the tests and the lab point it at.
"""
from mmalign.judge.ask import JudgeAskConfig, ask_judge
from mmalign.judge.cache import ResponseCache, request_hash
from mmalign.judge.client import JudgeClient, JudgeConfig, Judgement
from mmalign.judge.messages import (
    decode_data_url,
    image_block,
    image_data_url,
    user_message,
)
from mmalign.judge.parse import (
    PARSERS,
    ParseTally,
    parse_preference,
    parse_rating,
    parse_yes_no,
)

__all__ = [
    "PARSERS",
    "JudgeAskConfig",
    "JudgeClient",
    "JudgeConfig",
    "Judgement",
    "ParseTally",
    "ResponseCache",
    "ask_judge",
    "decode_data_url",
    "image_block",
    "image_data_url",
    "parse_preference",
    "parse_rating",
    "parse_yes_no",
    "request_hash",
    "user_message",
]
