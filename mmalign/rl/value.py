"""PPO's critic (ALGORITHMS.md §3.2): a scalar value head on the policy's last hidden state, one module with the
policy so the loop trains, checkpoints and (under DDP) synchronises both.

``V(s_t) = w . h_t + b`` with ``h_t`` the final (normed) hidden state at the column that predicts response token
``t``: the state before the token is chosen, which is what GAE's ``delta_t = r_t + gamma V_{t+1} - V_t`` needs.
The head shares the policy's trunk (TRL's ``AutoModelForCausalLMWithValueHead``); LLaVA-RLHF instead keeps a
separate critic initialised from the reward model. The head starts at zero, so the first advantages are the plain
returns, whitened.
"""
from __future__ import annotations

import torch

from mmalign.rl.rollout import Rollout, response_forward


class ActorCritic(torch.nn.Module):
    """The policy and its value head; ``forward(**inputs)`` is the policy's output plus ``values`` ``(B, L)``."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy
        self.value = torch.nn.Linear(policy.get_output_embeddings().in_features, 1)
        torch.nn.init.zeros_(self.value.weight)
        torch.nn.init.zeros_(self.value.bias)

    def forward(self, **inputs):
        out = self.policy(**inputs, output_hidden_states=True)
        out["values"] = self.value(out.hidden_states[-1]).squeeze(-1)
        return out


@torch.no_grad()
def values_of(model: ActorCritic, processor, rollout: Rollout, *, batch_size: int,
              packed: bool = False) -> torch.Tensor:
    """``(B, T)`` value estimates of the rollout's states in eval mode (PPO's ``old_values``), 0 on padding."""
    was_training = model.training
    model.eval()
    parts = [response_forward(model, processor, rollout.examples[s:s + batch_size],
                              rollout.response_ids[s:s + batch_size], rollout.mask[s:s + batch_size],
                              values=True, packed=packed).values.float()
             for s in range(0, len(rollout.examples), batch_size)]
    model.train(was_training)
    return torch.cat(parts).cpu()
