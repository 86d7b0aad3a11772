"""The R1 thinking prompt appended after every question, in training and in evaluation."""

# Exact released text: a line break followed by a space after the first sentence.
R1_PROMPT = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer.\n"
    " The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in \\boxed{}."
)


def with_r1_prompt(question: str) -> str:
    """The question, a space, then `R1_PROMPT` (as the released VLMEvalKit patch builds it)."""
    return f"{question} {R1_PROMPT}"
