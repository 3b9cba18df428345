"""Turning chat messages into one prompt string, for backends that have no chat template."""

from __future__ import annotations

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


def plain_prompt(messages: list[Message]) -> str:
    """Rendering for models without a chat template (base models): a Q/A transcript."""
    out = []
    for m in messages:
        if m["role"] == "system":
            out.append(m["content"] + "\n\n")
        elif m["role"] == "user":
            out.append(f"Q: {m['content']}\nA:")
        else:
            out.append(f" {m['content']}\n\n")
    return "".join(out)
