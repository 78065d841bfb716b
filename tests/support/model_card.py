"""The model card's prompt, copied verbatim: what the judge's rendering must equal byte for byte."""


# A verbatim copy of the prompt f-string in the model card of
# bunny127/SophiaVL-R1-Thinking-Reward-Model-3B (get_process_reward), with its "<image> "
# rule. The indentation of the continuation lines is the card's own (inside a function).
def card_prompt(prompt_str: str, reasoning_str: str, image_path: str | None = None) -> str:
    """The card's ``get_process_reward`` prompt for a question and a reasoning."""
    if image_path is not None:
        if "<image>" not in prompt_str:
            prompt_str = f"<image> {prompt_str}"

    prompt = f"""You are an expert reasoning evaluator. I will give you a multimodal question and an answer. Your goal is to judge a reward process and give a score between 0 and 1. You should focus on whether the reasoning process is good rather than whether the final answer is correct.### Evaluation Criteria:\n- **Logical Soundness**: Does each step follow logically from the previous one?\n- **Correct Reasoning**: Are the methods and steps used appropriate and valid? Are the facts and lemmas correctly stated and applied?\n- **Error Identification**: Are there any logical fallacies, unsupported assumptions, or incorrect steps?\n- **Language Consistency**: Is the reasoning process conducted in a single, consistent language without mixing different languages?\n- **Redundancy**: Is the reasoning concise, without unnecessary repetition or extraneous steps?\nProvide a single score from **{{0, 0.1, 0.2, ..., 1.0}}** based on the reasoning quality, where:\n - **0**: Completely flawed reasoning\n- **1**: Perfectly sound reasoning\n- Intermediate values (e.g., 0.3, 0.7) should reflect partial correctness or minor errors.\nBe strict, reward the good process and punish the bad one. You should only output the score without any explanation.
    Question: {prompt_str}
    Reasoning process: {reasoning_str}
    """
    return prompt


__all__ = ["card_prompt"]
