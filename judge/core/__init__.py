"""The pure judging core: no network I/O, no Runnable.

* :mod:`judge.core.inputs`: THE one input extractor (whatever a caller holds -> a judge input);
* :mod:`judge.core.prompt`: the model card's prompt, rendered byte for byte;
* :mod:`judge.core.sanitize`: special-token neutralisation;
* :mod:`judge.core.images`: images -> ``image_url`` content parts (the pixel work in
  :mod:`judge.core.pixels`);
* :mod:`judge.core.parse`: the score parser and the score grid;
* :mod:`judge.core.expected`: the expected score from the answer's logprobs;
* :mod:`judge.core.pipeline`: the judging dialogue without I/O (inputs -> requests ->
  ThinkingScores) that :class:`~judge.runnable.ThinkingRewardJudge` drives.
"""
